//! The agent's task list, one per user. Tasks are addressed by their per-user `number`.

use entity::task;
use sea_orm::{
    ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::{is_unique_violation, Store, StoreError};
use crate::domain::{new_id, now, UserId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskFilter {
    All,
    Pending,
    Completed,
}

#[derive(Clone, Debug, Default)]
pub struct TaskUpdate {
    pub title: Option<String>,
    pub description: Option<String>,
    pub completed: Option<bool>,
}

impl Store {
    /// Adds a task with the next free number for the user. Two concurrent adds race for
    /// the same number; the unique index picks one and the other takes the next.
    pub async fn add_task(
        &self,
        user: &UserId,
        title: &str,
        description: Option<&str>,
    ) -> Result<task::Model, StoreError> {
        for _ in 0..5 {
            let max: Option<i32> = task::Entity::find()
                .select_only()
                .column_as(task::Column::Number.max(), "max")
                .filter(task::Column::UserId.eq(user.as_str()))
                .into_tuple::<Option<i32>>()
                .one(&self.write)
                .await?
                .flatten();
            let at = now();
            let task = task::Model {
                id: new_id("tsk"),
                user_id: user.as_str().to_owned(),
                number: max.unwrap_or(0) + 1,
                title: title.to_owned(),
                description: description.map(str::to_owned),
                completed: false,
                due: None,
                created_at: at,
                updated_at: at,
            };
            match super::insert_rows::<task::Entity, _>(&self.write, vec![task.clone()]).await {
                Ok(()) => return Ok(task),
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Db(sea_orm::DbErr::Custom(
            "could not allocate a task number".into(),
        )))
    }

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
