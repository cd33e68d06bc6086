//! Settings: loading files and environment overrides, the validation rules, extreme values through
//! the real binary, `--check-config` and the command line's errors.

#[path = "../common/mod.rs"]
mod common;

mod check_config_files;
mod cli;
mod deployment_doc;
mod dist_files;
mod env;
mod extremes;
mod kubernetes_example;
mod load;
mod validate;
