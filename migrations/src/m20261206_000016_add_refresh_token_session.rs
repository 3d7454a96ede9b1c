//! Refresh tokens gain `session_id`: the session (see `m20261206_000015_create_sessions`) the
//! token belongs to. Every rotation keeps the session, so logging out with any of its tokens
//! ends the whole session. Nullable, without a foreign key (SQLite cannot add one to an existing
//! table): rows written before this migration have no session, and refreshing one starts a new
//! session.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    SessionId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshTokens::Table)
                    .add_column(uuid_null(RefreshTokens::SessionId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_tokens_session")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::SessionId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_refresh_tokens_session")
                    .table(RefreshTokens::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshTokens::Table)
                    .drop_column(RefreshTokens::SessionId)
                    .to_owned(),
            )
            .await
    }
}
