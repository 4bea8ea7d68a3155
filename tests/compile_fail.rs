//! Compile-fail tests: ids, keys and namespaces that must not be confused do not compile.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test --test compile_fail`,
//! then read each `.stderr` to check it shows the intended error.

#[test]
fn confusions_do_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    // Also required for the invalid-namespace case: with a `pass` case in the set, trybuild
    // runs `cargo build` instead of `cargo check`, and the namespace-name check is a
    // post-monomorphization const evaluation that `cargo check` does not perform.
    cases.pass("tests/ui/pass/*.rs");
}
