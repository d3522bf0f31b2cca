//! The examples build (cargo builds `examples/` for `cargo test`) and run: each is included here
//! and its `run` called, with what it printed checked.

#[path = "../examples/kv_store.rs"]
mod kv_store;

#[test]
fn kv_store_example_runs() {
    let log = kv_store::run().expect("the kv_store example ran");
    let text = log.join("\n");
    println!("{text}");
    assert!(text.contains("put user/ada at versions 1 then 2"), "{text}");
    assert!(
        text.contains("stale put refused: key at version 2"),
        "{text}"
    );
    assert!(text.contains("value: \"Ada King\", version: 2"), "{text}");
    assert!(
        text.contains("list user/ = [\"user/ada\", \"user/alan\"]"),
        "{text}"
    );
    assert!(text.contains("delete user/alan = true"), "{text}");
    assert!(
        text.contains("bad key: the method failed: keys are 1 to 64 bytes"),
        "{text}"
    );
    assert!(text.contains("clean drain: true"), "{text}");
}
