//! Dataset content as chunks (数据对接): content-defined cutting (`cut`),
//! verified streaming inside a chunk (`tree`), chunk lists (`list`) and the
//! crash-safe chunk store (`store`). Pure of the network: the runtime moves
//! chunks, this crate says what they are and keeps them.

pub mod cut;
pub mod list;
pub mod store;
pub mod tree;

pub use list::ChunkRef;
pub use store::{ChunkReader, ChunkStore, ChunkStoreError, ChunkWriter, DiskStore, MemStore};
pub use tree::{Hash, Verifier};
