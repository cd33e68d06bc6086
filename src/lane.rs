//! lane (in progress)
