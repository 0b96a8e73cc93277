//! closeloop-replay (see ARCHITECTURE.md).
