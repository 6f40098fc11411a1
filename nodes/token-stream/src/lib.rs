//! Asks the host's model provider for a completion and streams it as it is generated.

use warden_sdk::models::GenerationRequest;
use warden_sdk::prelude::*;
use warden_sdk::{models, stream};

struct TokenStream;

impl Node for TokenStream {
    const NAME: &'static str = "token-stream";

    fn info() -> NodeInfo {
        NodeInfo::new(Self::NAME, "Token stream")
            .description("Streams a model's answer to a prompt, piece by piece, and returns it whole")
            .category("ai")
            .input(Pin::text("prompt"))
            .input(Pin::text("model").default("default"))
            .input(Pin::integer("max-tokens").default(256i64).range(1.0, 32768.0))
            .output(Pin::text("text"))
            .output(Pin::integer("pieces"))
    }

    fn run(cx: &mut Context) -> Result<(), NodeError> {
        let request = GenerationRequest {
            model: cx.input("model")?,
            prompt: cx.input("prompt")?,
            max_tokens: Some(cx.input::<i64>("max-tokens")? as u32),
            temperature: None,
        };
        let generation = models::generate_stream(&request)?;
        let mut text = String::new();
        let mut pieces = 0i64;
        while let Some(piece) = generation.next()? {
            stream::emit(piece.as_str())?;
            text.push_str(&piece);
            pieces += 1;
        }
        cx.output("text", text);
        cx.output("pieces", pieces);
        Ok(())
    }
}

warden_sdk::export_nodes!(TokenStream);
