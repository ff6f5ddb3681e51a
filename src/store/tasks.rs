//! The agent's task list, one per user. Tasks are addressed by their per-user `number`.

use entity::task;
use sea_orm::{
    ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::{error::is_unique_violation, Store, StoreError};
use crate::domain::{new_id, now, UserId};

/// Which of the user's tasks `list_tasks` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskFilter {
    /// Every task.
    All,
    /// Tasks not completed.
    Pending,
    /// Completed tasks.
    Completed,
}

/// A partial change to a task; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct TaskUpdate {
    /// A new title.
    pub title: Option<String>,
    /// A new description.
    pub description: Option<String>,
    /// Done or not.
    pub completed: Option<bool>,
}

impl Store {
    /// Adds a task with the next free number for the user. The number is computed inside
    /// the insert (`INSERT … SELECT MAX(number) + 1 … RETURNING`), one atomic statement:
    /// on SQLite nothing can interleave; on PostgreSQL two instances may still pick the same
    /// number, the unique index refuses one, and it tries again.
    pub async fn add_task(
        &self,
        user: &UserId,
        title: &str,
        description: Option<&str>,
    ) -> Result<task::Model, StoreError> {
        use sea_orm::{
            sea_query::{Expr, Func, Query},
            ConnectionTrait,
        };
        for _ in 0..20 {
            let at = now();
            let mut task = task::Model {
                id: new_id("tsk"),
                user_id: user.as_str().to_owned(),
                number: 0,
                title: title.to_owned(),
                description: description.map(str::to_owned),
                completed: false,
                due: None,
                created_at: at,
                updated_at: at,
            };
            let next_number =
                Func::coalesce([Expr::col(task::Column::Number).max(), Expr::val(0).into()]);
            let values = Query::select()
                .expr(Expr::val(task.id.clone()))
                .expr(Expr::val(task.user_id.clone()))
                .expr(Expr::expr(next_number).add(1))
                .expr(Expr::val(task.title.clone()))
                .expr(Expr::val(task.description.clone()))
                .expr(Expr::val(false))
                .expr(Expr::val(task.due))
                .expr(Expr::val(at))
                .expr(Expr::val(at))
                .from(task::Entity)
                .and_where(task::Column::UserId.eq(user.as_str()))
                .to_owned();
            let insert = Query::insert()
                .into_table(task::Entity)
                .columns([
                    task::Column::Id,
                    task::Column::UserId,
                    task::Column::Number,
                    task::Column::Title,
                    task::Column::Description,
                    task::Column::Completed,
                    task::Column::Due,
                    task::Column::CreatedAt,
                    task::Column::UpdatedAt,
                ])
                .select_from(values)
                .map_err(|e| StoreError::Db(sea_orm::DbErr::Custom(e.to_string())))?
                .returning_col(task::Column::Number)
                .to_owned();
            let statement = self.write.get_database_backend().build(&insert);
            match self.write.query_one(statement).await {
                Ok(Some(row)) => {
                    task.number = row.try_get("", "number")?;
                    return Ok(task);
                }
                Ok(None) => break,
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Db(sea_orm::DbErr::Custom(
            "could not allocate a task number".into(),
        )))
    }

    /// The user's tasks matching `filter`, by number.
    pub async fn list_tasks(
        &self,
        user: &UserId,
        filter: TaskFilter,
    ) -> Result<Vec<task::Model>, StoreError> {
        let mut query = task::Entity::find().filter(task::Column::UserId.eq(user.as_str()));
        match filter {
            TaskFilter::All => {}
            TaskFilter::Pending => query = query.filter(task::Column::Completed.eq(false)),
            TaskFilter::Completed => query = query.filter(task::Column::Completed.eq(true)),
        }
        Ok(query
            .order_by_asc(task::Column::Number)
            .limit(500)
            .all(&self.read)
            .await?)
    }

    /// One of the user's tasks by its number.
    pub async fn get_task(
        &self,
        user: &UserId,
        number: i32,
    ) -> Result<Option<task::Model>, StoreError> {
        Ok(task::Entity::find()
            .filter(task::Column::UserId.eq(user.as_str()))
            .filter(task::Column::Number.eq(number))
            .one(&self.write)
            .await?)
    }

    /// Applies `update` to the user's task `number`; `None` if there is no such task.
    pub async fn update_task(
        &self,
        user: &UserId,
        number: i32,
        update: TaskUpdate,
    ) -> Result<Option<task::Model>, StoreError> {
        let Some(current) = self.get_task(user, number).await? else {
            return Ok(None);
        };
        let mut model = current.into_active_model();
        if let Some(title) = update.title {
            model.title = Set(title);
        }
        if let Some(description) = update.description {
            model.description = Set(Some(description));
        }
        if let Some(completed) = update.completed {
            model.completed = Set(completed);
        }
        model.updated_at = Set(now());
        let result = task::Entity::update_many()
            .set(model)
            .filter(task::Column::UserId.eq(user.as_str()))
            .filter(task::Column::Number.eq(number))
            .exec(&self.write)
            .await?;
        if result.rows_affected == 0 {
            return Ok(None);
        }
        self.get_task(user, number).await
    }

    /// Deletes the user's task `number`, returning it; `None` if there is no such task.
    pub async fn delete_task(
        &self,
        user: &UserId,
        number: i32,
    ) -> Result<Option<task::Model>, StoreError> {
        let Some(current) = self.get_task(user, number).await? else {
            return Ok(None);
        };
        let result = task::Entity::delete_many()
            .filter(task::Column::UserId.eq(user.as_str()))
            .filter(task::Column::Id.eq(current.id.as_str()))
            .exec(&self.write)
            .await?;
        Ok((result.rows_affected == 1).then_some(current))
    }
}
