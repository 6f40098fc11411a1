//! Changes text: upper- or lower-case, reversed, or counted. Needs no capability.

use warden_sdk::prelude::*;

struct TextTransform;

impl Node for TextTransform {
    const NAME: &'static str = "text-transform";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "Text transform")
            .description("Changes the case of text, reverses it, or counts its words")
            .category("text")
            .input(Pin::text("text").describe("The text to transform"))
            .input(
                Pin::text("mode")
                    .describe("What to do with the text")
                    .default("upper")
                    .one_of(["upper", "lower", "reverse", "title"]),
            )
            .output(Pin::text("result").describe("The transformed text"))
            .output(Pin::integer("words").describe("How many words the text has"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let text: String = cx.input("text")?;
        let mode: String = cx.input("mode")?;
        let result = match mode.as_str() {
            "upper" => text.to_uppercase(),
            "lower" => text.to_lowercase(),
            "reverse" => text.chars().rev().collect(),
            "title" => text
                .split(' ')
                .map(|word| {
                    let mut chars = word.chars();
                    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
                })
                .collect::<Vec<String>>()
                .join(" "),
            other => return Err(NodeError::new(format!("unknown mode `{other}`"))),
        };
        cx.output("words", text.split_whitespace().count() as i64);
        cx.output("result", result);
        Ok(())
    }
}

/// Joins two texts: a second node in the same component.
struct Concat;

impl Node for Concat {
    const NAME: &'static str = "concat";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "Concatenate")
            .description("Joins two texts with a separator")
            .category("text")
            .input(Pin::text("left"))
            .input(Pin::text("right"))
            .input(Pin::text("separator").default(" "))
            .output(Pin::text("result"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let left: String = cx.input("left")?;
        let right: String = cx.input("right")?;
        let separator: String = cx.input("separator")?;
        cx.output("result", format!("{left}{separator}{right}"));
        Ok(())
    }
}

warden_sdk::export_nodes!(TextTransform, Concat);
