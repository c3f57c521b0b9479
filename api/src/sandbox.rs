//! What SQL may do over the lake: read. A statement is checked twice, on its syntax
//! (so the refusal names what was sent) and on its logical plan with DataFusion's
//! `SQLOptions` (so nothing that plans into DDL, DML or a statement slips through, like
//! `SELECT ... INTO`). Table functions that could read files are not registered.

use crate::error::{Error, Result};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;

/// What the refusal offers instead.
pub(crate) const ALLOWED: &str = "queries over the lake are read-only; allowed are SELECT (with WITH, VALUES, UNION, subqueries), EXPLAIN [ANALYZE] of a query, DESCRIBE <table>, SHOW TABLES and SHOW COLUMNS FROM <table>";

/// Table functions kept in a query's session: they generate rows and read nothing.
const TABLE_FUNCTIONS: &[&str] = &["generate_series", "range"];

/// Refuses every statement that is not a read-only query.
pub(crate) fn check_statement(statement: &DfStatement) -> Result<()> {
    match statement {
        DfStatement::Statement(s) => check_sql(s),
        DfStatement::Explain(explain) => check_statement(&explain.statement),
        DfStatement::CreateExternalTable(_) => Err(refused("CREATE EXTERNAL TABLE")),
        DfStatement::CopyTo(_) => Err(refused("COPY")),
        DfStatement::Reset(_) => Err(refused("RESET")),
    }
}

fn check_sql(statement: &Statement) -> Result<()> {
    match statement {
        Statement::Query(_)
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ExplainTable { .. } => Ok(()),
        Statement::Explain { statement, .. } => check_sql(statement),
        other => Err(refused(&kind(other))),
    }
}

/// The plan-level check: DataFusion's own guard against DDL, DML (COPY included) and
/// statements such as SET, over the whole plan including subqueries.
pub(crate) fn check_plan(plan: &LogicalPlan) -> Result<()> {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| {
            let what = crate::error::clean(&e);
            Error::NotAllowed(format!(
                "the statement would create or change something ({what}), which is not allowed: {ALLOWED}"
            ))
        })
}

/// Removes every table function but the ones that only generate rows, so that none
/// that reads files or URLs (`read_parquet`, `read_csv`, ... in some builds) is reachable.
pub(crate) fn restrict_table_functions(ctx: &SessionContext) {
    let names: Vec<String> = ctx.state().table_functions().keys().cloned().collect();
    for name in names {
        if !TABLE_FUNCTIONS.contains(&name.as_str()) {
            ctx.deregister_udtf(&name);
        }
    }
}

fn refused(kind: &str) -> Error {
    Error::NotAllowed(format!("{kind} is not allowed: {ALLOWED}"))
}

/// `CREATE TABLE`, `DROP VIEW`, `INSERT`, ...: the statement as the analyst wrote it.
fn kind(statement: &Statement) -> String {
    match statement {
        Statement::CreateTable(_) => "CREATE TABLE".into(),
        Statement::CreateView(_) => "CREATE VIEW".into(),
        Statement::AlterTable(_) => "ALTER TABLE".into(),
        Statement::Drop { object_type, .. } => format!("DROP {object_type}"),
        other => {
            let text = other.to_string();
            let first = text.split_whitespace().next().unwrap_or("this statement");
            first.to_uppercase()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sql: &str) -> Result<()> {
        let ctx = SessionContext::new();
        let statement = ctx
            .state()
            .sql_to_statement(sql, &datafusion::config::Dialect::Generic)
            .unwrap();
        check_statement(&statement)
    }

    #[test]
    fn only_read_only_statements_pass_the_syntax_check() {
        for sql in [
            "SELECT 1",
            "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
            "VALUES (1), (2)",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT 1",
            "SHOW TABLES",
            "SHOW COLUMNS FROM samples_door",
            "DESCRIBE samples_door",
        ] {
            assert!(check(sql).is_ok(), "{sql} is refused");
        }
        for (sql, kind) in [
            ("CREATE TABLE x AS SELECT 1", "CREATE TABLE"),
            ("CREATE TABLE x (a INT)", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            (
                "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            ("DROP TABLE samples_door", "DROP TABLE"),
            ("DROP VIEW v", "DROP VIEW"),
            ("INSERT INTO samples_door VALUES (1)", "INSERT"),
            ("UPDATE samples_door SET open = true", "UPDATE"),
            ("DELETE FROM samples_door", "DELETE"),
            ("TRUNCATE samples_door", "TRUNCATE"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("COPY samples_door TO '/tmp/x.parquet'", "COPY"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("RESET datafusion.execution.batch_size", "RESET"),
            ("EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", "INSERT"),
            ("CREATE SCHEMA s", "CREATE"),
            ("PREPARE p AS SELECT 1", "PREPARE"),
            ("BEGIN TRANSACTION", "BEGIN"),
        ] {
            let e = check(sql).expect_err(sql).to_string();
            assert!(
                e.starts_with(&format!("{kind} is not allowed")),
                "{sql}: {e}"
            );
            assert!(e.contains("allowed are SELECT"), "{sql}: {e}");
        }
    }

    #[tokio::test]
    async fn plans_that_write_are_refused_too() {
        let ctx = SessionContext::new();
        // Passes the syntax check (a query), plans into DDL.
        let plan = ctx
            .state()
            .create_logical_plan("SELECT 1 AS x INTO t")
            .await
            .unwrap();
        let e = check_plan(&plan).unwrap_err().to_string();
        assert!(e.contains("is not allowed"), "{e}");
        let plan = ctx.state().create_logical_plan("SELECT 1").await.unwrap();
        assert!(check_plan(&plan).is_ok());
    }

    #[test]
    fn only_generating_table_functions_stay() {
        let ctx = SessionContext::new();
        restrict_table_functions(&ctx);
        let mut left: Vec<String> = ctx.state().table_functions().keys().cloned().collect();
        left.sort();
        assert!(
            left.iter().all(|n| TABLE_FUNCTIONS.contains(&n.as_str())),
            "{left:?}"
        );
    }
}
