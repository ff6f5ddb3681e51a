//! Schema migrations, applied at start-up and by `chatkit-gateway migrate`.
pub use sea_orm_migration::prelude::*;

mod m20261121_000001_init;
mod m20261122_000001_refresh_successor;
mod m20261122_000002_chatkit;
mod m20261122_000003_hot_claims;
mod m20261201_000001_partial_indexes;
mod m20261204_000001_attachments;
mod m20261205_000001_payload_json;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_init::Migration),
            Box::new(m20261122_000001_refresh_successor::Migration),
            Box::new(m20261122_000002_chatkit::Migration),
            Box::new(m20261122_000003_hot_claims::Migration),
            Box::new(m20261201_000001_partial_indexes::Migration),
            Box::new(m20261204_000001_attachments::Migration),
            Box::new(m20261205_000001_payload_json::Migration),
        ]
    }
}
