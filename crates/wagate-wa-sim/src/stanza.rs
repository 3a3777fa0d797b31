//! Small helpers to read and build binary stanzas (`wacore_binary::Node`).
//!
//! The protocol crate's `Node` API is built for the client's hot path; these wrappers keep the
//! simulator's handlers short and readable.

use std::borrow::Cow;
use whatsapp_rust::Jid;
use whatsapp_rust::wacore_binary::builder::NodeBuilder;
use whatsapp_rust::wacore_binary::{Node, NodeContent, NodeValue};

/// The server's own address, used as `from` on everything the server itself says.
pub(crate) const SERVER: &str = "s.whatsapp.net";

pub(crate) fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

pub(crate) fn jid_attr(node: &Node, key: &str) -> Option<Jid> {
    node.attrs.get(key).and_then(NodeValue::to_jid)
}

pub(crate) fn child<'a>(node: &'a Node, tag: &str) -> Option<&'a Node> {
    node.get_optional_child(tag)
}

pub(crate) fn children(node: &Node) -> &[Node] {
    node.children().unwrap_or_default()
}

pub(crate) fn bytes(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(b)) => Some(b),
        Some(NodeContent::String(s)) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(crate) fn text(node: &Node) -> Option<String> {
    match &node.content {
        Some(NodeContent::String(s)) => Some(s.to_string()),
        Some(NodeContent::Bytes(b)) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// Copies attribute `key` from `from` onto `to`, if present.
pub(crate) fn copy_attr(from: &Node, to: &mut Node, key: &'static str) {
    if let Some(v) = from.attrs.get(key) {
        to.attrs.insert(Cow::Borrowed(key), v.clone());
    }
}

pub(crate) fn now_secs() -> i64 {
    whatsapp_rust::wacore::time::now_millis() / 1000
}

/// `<iq type="result" id=… from="s.whatsapp.net">children</iq>`.
pub(crate) fn iq_result(id: &str, children: Vec<Node>) -> Node {
    let b = NodeBuilder::new("iq")
        .attr("type", "result")
        .attr("id", id)
        .attr("from", SERVER);
    if children.is_empty() {
        b.build()
    } else {
        b.children(children).build()
    }
}

/// `<iq type="error" id=…><error code text/></iq>`: the client fails this request at once
/// instead of waiting for its 75 s IQ timeout.
pub(crate) fn iq_error(id: &str, code: u16, text: &str) -> Node {
    NodeBuilder::new("iq")
        .attr("type", "error")
        .attr("id", id)
        .attr("from", SERVER)
        .children([NodeBuilder::new("error")
            .attr("code", code)
            .attr("text", text)
            .build()])
        .build()
}

/// Renders a stanza the way the protocol crate logs it (XML-like), for warnings.
pub(crate) fn show(node: &Node) -> String {
    whatsapp_rust::wacore::xml::DisplayableNode(node).to_string()
}
