//! `GetOrgTree`: a node of the administrative tree and the levels below it, from `org_units`.

use std::collections::HashMap;

use sqlx::{PgPool, Row};
use whistle_proto::v1;

use crate::{area, convert, Error, Result};

/// Deeper than the tree (city → district → street → community → grid is 4 levels below the
/// root); a larger request depth is the same as this.
const MAX_DEPTH: u32 = 8;

/// The node `root_code` (empty: the root of the tree) with `depth` levels of children, each
/// level sorted by code.
pub(crate) async fn read(pool: &PgPool, root_code: &str, depth: u32) -> Result<v1::OrgNode> {
    let root = area::parse_optional("root_code", root_code)?;
    let rows = sqlx::query(
        "WITH RECURSIVE tree AS (
             SELECT code, parent_code, level, name, classification, lat, lon, 0 AS depth
             FROM org_units
             WHERE CASE WHEN $1::text IS NULL THEN parent_code IS NULL ELSE code = $1 END
           UNION ALL
             SELECT u.code, u.parent_code, u.level, u.name, u.classification, u.lat, u.lon, t.depth + 1
             FROM org_units u JOIN tree t ON u.parent_code = t.code
             WHERE t.depth < $2
         )
         SELECT code, parent_code, level, name, classification, lat, lon, depth FROM tree
         ORDER BY depth, code",
    )
    .bind(root.as_ref().map(|r| r.as_str()))
    .bind(depth.min(MAX_DEPTH) as i32)
    .fetch_all(pool)
    .await?;

    let mut roots = Vec::new();
    let mut children: HashMap<String, Vec<v1::OrgNode>> = HashMap::new();
    // Rows come by depth; build from the deepest level up so each node takes its finished
    // children.
    for row in rows.iter().rev() {
        let code: String = row.try_get("code")?;
        let node = v1::OrgNode {
            children: {
                let mut own = children.remove(&code).unwrap_or_default();
                own.reverse();
                own
            },
            code,
            name: row.try_get("name")?,
            level: convert::level_from_db(row.try_get("level")?)? as i32,
            classification: row.try_get("classification")?,
            lat: row.try_get("lat")?,
            lon: row.try_get("lon")?,
        };
        if row.try_get::<i32, _>("depth")? == 0 {
            roots.push(node);
        } else {
            let parent: Option<String> = row.try_get("parent_code")?;
            let parent = parent.ok_or_else(|| {
                Error::Corrupt(format!(
                    "org unit {} below the root has no parent",
                    node.code
                ))
            })?;
            children.entry(parent).or_default().push(node);
        }
    }
    match (roots.pop(), root) {
        (Some(node), _) if roots.is_empty() => Ok(node),
        (Some(_), _) => Err(Error::Corrupt(
            "the org tree has more than one root; name root_code".into(),
        )),
        (None, Some(root)) => Err(Error::not_found(format!("no org unit {root}"))),
        (None, None) => Err(Error::not_found(
            "the org tree is empty (load it with `whistle seed`)",
        )),
    }
}
