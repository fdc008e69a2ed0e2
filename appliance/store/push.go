package store

// schemaPush is the migration creating the tables for XEP-0357 push registrations.
// Placeholder until the feature lands: a migration slot reserved in order.
const schemaPush = `CREATE TABLE IF NOT EXISTS placeholder_schemapush (id INTEGER PRIMARY KEY) STRICT;`
