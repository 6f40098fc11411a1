//! What a node is, as the host sees it: the summary of a component's imports and exports, the
//! node's self-description and pins, the values that cross the boundary, and the run context.

pub mod component;
pub mod context;
pub mod info;
pub mod pins;
pub mod value;
