//! Stripe webhook events already handled, by event id: the webhook handler inserts the id in
//! the transaction that applies the event (`ON CONFLICT DO NOTHING`), so a redelivered event
//! (Stripe retries, replays) is applied once.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum StripeEvents {
    Table,
    Id,
    Type,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StripeEvents::Table)
                    .col(text(StripeEvents::Id).primary_key())
                    .col(text(StripeEvents::Type))
                    .col(timestamp_with_time_zone(StripeEvents::ReceivedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(StripeEvents::Table).to_owned())
            .await
    }
}
