//! closeloop-projections (see ARCHITECTURE.md).
