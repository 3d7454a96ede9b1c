//! Minimal Server-Sent Events parsing for assertions on streamed responses.
//!
//! Follows the framing rules of the HTML standard's event-stream format as far as tests need:
//! events are separated by a blank line, `data:` lines of one event are joined with `\n`, one
//! optional space after the colon is dropped, and comment lines (`:`) are ignored.

/// The `data` payload of every complete event in `body`, in order. A trailing event without its
/// terminating blank line (a cut stream) is not returned.
pub fn data_events(body: &str) -> Vec<String> {
    let normalized = body.replace("\r\n", "\n").replace('\r', "\n");
    let mut blocks: Vec<&str> = normalized.split("\n\n").collect();
    // The last piece is whatever follows the final blank line: incomplete by definition.
    blocks.pop();
    blocks
        .into_iter()
        .filter_map(|block| {
            let data: Vec<&str> = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_and_drops_the_incomplete_tail() {
        let body =
            "data: {\"a\":1}\n\n: comment\n\ndata:x\ndata: y\r\n\r\ndata: [DONE]\n\ndata: partial";
        assert_eq!(data_events(body), vec!["{\"a\":1}", "x\ny", "[DONE]"]);
        assert!(data_events("").is_empty());
    }
}
