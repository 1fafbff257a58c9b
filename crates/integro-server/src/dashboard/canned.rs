//! Canned replies: the tenant's list, and for admins and owners forms to
//! add, change and delete them (through the API's handlers, audited there).
//! Agents pick them in a conversation's message box (`canned.js`).

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use integro_core::Permission;
use integro_store::canned_replies::{self, CannedReply};
use serde::Deserialize;
use uuid::Uuid;

use super::page::{Layout, PageResult, render};
use super::session::Acting;
use crate::api;
use crate::extract::ApiJson;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "canned_replies.html")]
struct CannedPage {
    layout: Layout,
    replies: Vec<CannedReply>,
    can_manage: bool,
    max: i64,
}

pub async fn canned_replies(State(state): State<AppState>, acting: Acting) -> PageResult {
    acting.ctx.require(Permission::Read)?;
    let replies = canned_replies::list(&state.db, acting.ctx.tenant_id).await?;
    Ok(render(&CannedPage {
        layout: Layout::of(&acting, "Canned replies", "canned"),
        replies,
        can_manage: acting.ctx.role.allows(Permission::Manage),
        max: canned_replies::MAX_PER_TENANT,
    }))
}

#[derive(Deserialize)]
pub struct CannedForm {
    shortcut: String,
    text: String,
}

pub async fn create(
    State(state): State<AppState>,
    acting: Acting,
    Form(form): Form<CannedForm>,
) -> PageResult {
    let request = api::canned_replies::CannedReplyRequest {
        shortcut: form.shortcut,
        text: form.text,
    };
    let _ = api::canned_replies::create_canned_reply(State(state), acting.ctx, ApiJson(request))
        .await?;
    Ok(Redirect::to("/canned-replies").into_response())
}

pub async fn update(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
    Form(form): Form<CannedForm>,
) -> PageResult {
    let request = api::canned_replies::CannedReplyUpdate {
        shortcut: Some(form.shortcut),
        text: Some(form.text),
    };
    let _ = api::canned_replies::update_canned_reply(
        State(state),
        acting.ctx,
        Path(id),
        ApiJson(request),
    )
    .await?;
    Ok(Redirect::to(&format!("/canned-replies#reply-{id}")).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    acting: Acting,
    Path(id): Path<Uuid>,
) -> PageResult {
    let _ = api::canned_replies::delete_canned_reply(State(state), acting.ctx, Path(id)).await?;
    Ok(Redirect::to("/canned-replies").into_response())
}
