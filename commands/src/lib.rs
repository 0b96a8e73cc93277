//! closeloop-commands (see ARCHITECTURE.md).
