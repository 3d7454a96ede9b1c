//! `route_candidates`: the deployments a route may choose, keyed by `(route_id, position)`
//! (the order the route lists them). `deployment_id` has a foreign key to `model_deployments`,
//! so a deployment a route uses cannot be deleted; a route lists a deployment at most once.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "route_candidates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub route_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub position: i32,
    pub deployment_id: Uuid,
    pub weight: Option<i64>,
    pub priority: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
