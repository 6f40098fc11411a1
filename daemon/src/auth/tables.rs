//! Where the auth store keeps its entries: the tables of `auth.redb` on one machine, or the
//! cluster's `warden_principals` table. The store's rules are written once, against [`Tables`],
//! and run in one transaction of either.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

/// The store's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Users,
    Roles,
    /// Keyed `user\0role\0app` (`app` empty for every app).
    Assignments,
    /// Keyed by the hex SHA-256 of the secret.
    Credentials,
    /// `user\0id` to the credential's hash: a user's credentials without a scan of everyone's.
    ByUser,
    /// A credential's id to its hash.
    ById,
}

pub const ALL_TABLES: [Table; 6] = [
    Table::Users,
    Table::Roles,
    Table::Assignments,
    Table::Credentials,
    Table::ByUser,
    Table::ById,
];

impl Table {
    /// Its name, in `auth.redb` and in the cluster's table.
    pub fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Roles => "roles",
            Table::Assignments => "assignments",
            Table::Credentials => "credentials",
            Table::ByUser => "credentials_by_user",
            Table::ById => "credentials_by_id",
        }
    }
}

/// One transaction's view of the tables. Errors are the backend's, as text.
pub trait Tables {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// The values of those of `keys` that are in the table, in one call.
    fn get_many(&mut self, table: Table, keys: &[String]) -> Result<Vec<Vec<u8>>, String>;
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), String>;
    /// Whether there was an entry to remove.
    fn remove(&mut self, table: Table, key: &str) -> Result<bool, String>;
    /// The entries whose keys are in `from..to`, in the order of their keys.
    fn range(
        &mut self,
        table: Table,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, String>;
    /// Every entry, in the order of the keys.
    fn all(&mut self, table: Table) -> Result<Vec<(String, Vec<u8>)>, String>;
}

// The embedded store's tables keep the types they always had (an index's value is text), so
// that stores written before this interface existed open unchanged.
const BYTES_USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const BYTES_ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("roles");
const BYTES_ASSIGNMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("assignments");
const BYTES_CREDENTIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("credentials");
const TEXT_BY_USER: TableDefinition<&str, &str> = TableDefinition::new("credentials_by_user");
const TEXT_BY_ID: TableDefinition<&str, &str> = TableDefinition::new("credentials_by_id");

enum Definition {
    Bytes(TableDefinition<'static, &'static str, &'static [u8]>),
    Text(TableDefinition<'static, &'static str, &'static str>),
}

fn definition(table: Table) -> Definition {
    match table {
        Table::Users => Definition::Bytes(BYTES_USERS),
        Table::Roles => Definition::Bytes(BYTES_ROLES),
        Table::Assignments => Definition::Bytes(BYTES_ASSIGNMENTS),
        Table::Credentials => Definition::Bytes(BYTES_CREDENTIALS),
        Table::ByUser => Definition::Text(TEXT_BY_USER),
        Table::ById => Definition::Text(TEXT_BY_ID),
    }
}

fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// A transaction of `auth.redb`.
pub enum RedbTables {
    Read(redb::ReadTransaction),
    Write(Box<redb::WriteTransaction>),
}

impl RedbTables {
    pub fn read(db: &redb::Database) -> Result<RedbTables, String> {
        db.begin_read().map(RedbTables::Read).map_err(text)
    }

    pub fn write(db: &redb::Database) -> Result<RedbTables, String> {
        db.begin_write()
            .map(|txn| RedbTables::Write(Box::new(txn)))
            .map_err(text)
    }

    /// Creates every table that does not exist yet.
    pub fn create_all(&mut self) -> Result<(), String> {
        let RedbTables::Write(txn) = self else {
            return Err("a read transaction creates no table".into());
        };
        for table in ALL_TABLES {
            match definition(table) {
                Definition::Bytes(definition) => drop(txn.open_table(definition).map_err(text)?),
                Definition::Text(definition) => drop(txn.open_table(definition).map_err(text)?),
            }
        }
        Ok(())
    }

    /// Commits a write transaction (a read one ends).
    pub fn commit(self) -> Result<(), String> {
        match self {
            RedbTables::Read(_) => Ok(()),
            RedbTables::Write(txn) => txn.commit().map_err(text),
        }
    }
}

/// Runs `$body` with `$t` the table opened in the transaction, and `$value` turning one of its
/// values into bytes, for each kind of transaction and table.
macro_rules! with_table {
    ($tables:expr, $table:expr, |$t:ident, $value:ident| $body:expr) => {
        match ($tables, definition($table)) {
            (RedbTables::Read(txn), Definition::Bytes(definition)) => {
                let $t = txn.open_table(definition).map_err(text)?;
                let $value = |value: &[u8]| value.to_vec();
                $body
            }
            (RedbTables::Read(txn), Definition::Text(definition)) => {
                let $t = txn.open_table(definition).map_err(text)?;
                let $value = |value: &str| value.as_bytes().to_vec();
                $body
            }
            (RedbTables::Write(txn), Definition::Bytes(definition)) => {
                let $t = txn.open_table(definition).map_err(text)?;
                let $value = |value: &[u8]| value.to_vec();
                $body
            }
            (RedbTables::Write(txn), Definition::Text(definition)) => {
                let $t = txn.open_table(definition).map_err(text)?;
                let $value = |value: &str| value.as_bytes().to_vec();
                $body
            }
        }
    };
}

impl Tables for RedbTables {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, String> {
        with_table!(&*self, table, |t, value| Ok(t
            .get(key)
            .map_err(text)?
            .map(|found| value(found.value()))))
    }

    fn get_many(&mut self, table: Table, keys: &[String]) -> Result<Vec<Vec<u8>>, String> {
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            found.extend(self.get(table, key)?);
        }
        Ok(found)
    }

    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), String> {
        let RedbTables::Write(txn) = self else {
            return Err("a read transaction writes nothing".into());
        };
        match definition(table) {
            Definition::Bytes(definition) => {
                txn.open_table(definition)
                    .map_err(text)?
                    .insert(key, value)
                    .map_err(text)?;
            }
            Definition::Text(definition) => {
                let value = std::str::from_utf8(value).map_err(text)?;
                txn.open_table(definition)
                    .map_err(text)?
                    .insert(key, value)
                    .map_err(text)?;
            }
        }
        Ok(())
    }

    fn remove(&mut self, table: Table, key: &str) -> Result<bool, String> {
        let RedbTables::Write(txn) = self else {
            return Err("a read transaction writes nothing".into());
        };
        Ok(match definition(table) {
            Definition::Bytes(definition) => txn
                .open_table(definition)
                .map_err(text)?
                .remove(key)
                .map_err(text)?
                .is_some(),
            Definition::Text(definition) => txn
                .open_table(definition)
                .map_err(text)?
                .remove(key)
                .map_err(text)?
                .is_some(),
        })
    }

    fn range(
        &mut self,
        table: Table,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        with_table!(&*self, table, |t, value| {
            let mut entries = Vec::new();
            for entry in t.range(from..to).map_err(text)? {
                let (key, found) = entry.map_err(text)?;
                entries.push((key.value().to_string(), value(found.value())));
            }
            Ok(entries)
        })
    }

    fn all(&mut self, table: Table) -> Result<Vec<(String, Vec<u8>)>, String> {
        with_table!(&*self, table, |t, value| {
            let mut entries = Vec::new();
            for entry in t.iter().map_err(text)? {
                let (key, found) = entry.map_err(text)?;
                entries.push((key.value().to_string(), value(found.value())));
            }
            Ok(entries)
        })
    }
}

impl Tables for warden_cluster::PrincipalsTx<'_> {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, String> {
        warden_cluster::PrincipalsTx::get(self, table.name(), key).map_err(text)
    }

    fn get_many(&mut self, table: Table, keys: &[String]) -> Result<Vec<Vec<u8>>, String> {
        warden_cluster::PrincipalsTx::get_many(self, table.name(), keys).map_err(text)
    }

    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), String> {
        warden_cluster::PrincipalsTx::put(self, table.name(), key, value).map_err(text)
    }

    fn remove(&mut self, table: Table, key: &str) -> Result<bool, String> {
        warden_cluster::PrincipalsTx::remove(self, table.name(), key).map_err(text)
    }

    fn range(
        &mut self,
        table: Table,
        from: &str,
        to: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        warden_cluster::PrincipalsTx::range(self, table.name(), Some((from, to))).map_err(text)
    }

    fn all(&mut self, table: Table) -> Result<Vec<(String, Vec<u8>)>, String> {
        warden_cluster::PrincipalsTx::range(self, table.name(), None).map_err(text)
    }
}
