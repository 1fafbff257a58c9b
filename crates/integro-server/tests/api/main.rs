//! API tests over real HTTP, on SQLite and (with INTEGRO_TEST_POSTGRES_URL) on
//! PostgreSQL.

mod channels;
mod helpers;
mod meta_x_web;

mod api_keys;
mod audit;
mod auth;
mod dashboard;
mod dashboard_posts;
mod dashboard_settings;
mod inbox_features;
mod members;
mod operations;
mod outbound;
mod problems;
mod proof;
mod readme_features;
mod reply_engine;
mod secrets;
mod silent_bots;
mod tenancy;
mod twilio_loop;
mod usage;
mod web_public;
mod workflow_forms;
mod workflows;
mod x_metrics;
mod x_oauth;
mod x_poll;
mod x_posts;
mod x_trends;
