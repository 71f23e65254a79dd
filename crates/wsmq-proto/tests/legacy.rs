//! The legacy dialect: `/subscribe/<queue>` parsing and `{"message":…}` frames that are
//! byte-identical to Node's `JSON.stringify({message: body})`.

mod support;

use wsmq_proto::legacy::{LegacyCommand, encode_message, encode_message_into};
use wsmq_proto::{ErrorCode, QueueName};

use support::{Rng, run_node};

/// `(body, JSON.stringify({message: body}))`, as printed by Node 20.
const NODE_GOLDEN: &[(&str, &str)] = &[
    ("hello", r#"{"message":"hello"}"#),
    (r#"{"a":1}"#, r#"{"message":"{\"a\":1}"}"#),
    (
        "line1\nline2\ttab\r\u{0}\u{1f}\u{7f}\u{8}\u{c}",
        "{\"message\":\"line1\\nline2\\ttab\\r\\u0000\\u001f\u{7f}\\b\\f\"}",
    ),
    // U+2028/2029 are valid in JSON and JSON.stringify leaves them raw.
    ("\u{2028}\u{2029}", "{\"message\":\"\u{2028}\u{2029}\"}"),
    ("😀 é 中", r#"{"message":"😀 é 中"}"#),
    // No escaping of `/` or `<`: the output is JSON, not HTML.
    ("</script><!--", r#"{"message":"</script><!--"}"#),
    (
        r#"back\slash "quoted" /slash/"#,
        r#"{"message":"back\\slash \"quoted\" /slash/"}"#,
    ),
    (
        "\u{feff}\u{85}\u{a0}",
        "{\"message\":\"\u{feff}\u{85}\u{a0}\"}",
    ),
    ("", r#"{"message":""}"#),
];

#[test]
fn subscribe_parses_a_queue_name() {
    assert_eq!(
        LegacyCommand::parse("/subscribe/57c8f0e2a1b3c4d5e6f70812").unwrap(),
        LegacyCommand::Subscribe(QueueName::new("57c8f0e2a1b3c4d5e6f70812").unwrap())
    );
}

#[test]
fn timestamps_and_other_text_are_ignored() {
    for text in [
        "1700000000123",
        "ping",
        "",
        "/subscribe",
        "/unsubscribe/q",
        "{\"op\":\"ping\"}",
    ] {
        assert_eq!(
            LegacyCommand::parse(text).unwrap(),
            LegacyCommand::Ignored,
            "{text:?}"
        );
    }
}

#[test]
fn subscribe_with_an_invalid_queue_is_an_error() {
    for text in [
        "/subscribe/",
        "/subscribe/bad name",
        "/subscribe/a.b",
        "/subscribe/q\r\n",
    ] {
        let err = LegacyCommand::parse(text).unwrap_err();
        assert_eq!(err.code(), ErrorCode::Invalid, "{text:?}");
    }
    let long = format!("/subscribe/{}", "q".repeat(161));
    assert!(LegacyCommand::parse(&long).is_err());
}

#[test]
fn message_frames_match_json_stringify() {
    for &(body, expected) in NODE_GOLDEN {
        assert_eq!(encode_message(body), expected, "{body:?}");
        let mut out = String::from(">");
        encode_message_into(&mut out, body);
        assert_eq!(&out[1..], expected);
    }
}

/// Live check: random tricky bodies through Node's `JSON.stringify` and ours.
#[test]
fn message_frames_match_live_node() {
    const STRINGIFY: &str = "let d='';process.stdin.on('data',c=>d+=c).on('end',()=>{\
        process.stdout.write(JSON.stringify(JSON.parse(d).map(m=>JSON.stringify({message:m}))));});";
    let mut rng = Rng::from_env();
    let bodies: Vec<String> = (0..300).map(|_| rng.tricky_string(60)).collect();
    let input = serde_json::to_string(&bodies).unwrap();
    let Some(output) = run_node(STRINGIFY, &input) else {
        return;
    };
    let expected: Vec<String> = serde_json::from_str(&output).unwrap();
    assert_eq!(expected.len(), bodies.len());
    for (body, expected) in bodies.iter().zip(&expected) {
        assert_eq!(&encode_message(body), expected, "{body:?}");
    }
}
