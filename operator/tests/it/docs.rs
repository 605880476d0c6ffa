//! `docs/operator.md` documents every flag of the binary with its environment variable.

use clap::CommandFactory as _;
use operator::args::Args;

#[test]
fn the_operator_doc_lists_every_flag_and_its_environment_variable() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operator.md"))
        .expect("docs/operator.md exists");
    let command = Args::command();
    let mut missing = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version"].contains(&long) {
            continue;
        }
        if !doc.contains(&format!("`--{long}`")) {
            missing.push(format!("--{long}"));
        }
        match arg.get_env() {
            Some(env) => {
                let env = env.to_string_lossy();
                if !doc.contains(&format!("`{env}`")) {
                    missing.push(env.into_owned());
                }
            }
            None => missing.push(format!("--{long} has no environment variable")),
        }
    }
    assert!(
        missing.is_empty(),
        "docs/operator.md does not document {missing:?}"
    );
}
