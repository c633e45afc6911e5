//! Parser + typing + planning + expansion must never panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild::dockerfile::{self, shell::Lexer};
use rbuild::plan::{Plan, PlanOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = vec![
        ("A".to_string(), "x y".to_string()),
        ("B".to_string(), String::new()),
    ];
    let _ = Lexer::new('\\').process_words(text, &env);
    let _ = Lexer::new('`').process_word(text, &env);
    let path = std::path::Path::new("Dockerfile");
    if let Ok(df) = dockerfile::parse(text, path) {
        let _ = df.dump();
        if let Ok(instrs) = df.instructions() {
            let lexer = Lexer::new(df.escape);
            for i in &instrs {
                let _ = i.inner.expand(&lexer, &env);
            }
        }
        let _ = Plan::new(&df, &PlanOptions::default());
    }
});
