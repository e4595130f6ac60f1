-- A change data capture role on a legacy deployable's own cluster, included by that cluster's
-- <name>-postgres-init.sql with :role, :db, :schema, :owner, :publication and :password set,
-- after postgres-role.sql has made :owner's role, database and schema. Every statement can run
-- again.

-- \getenv leaves :password as it was when the variable is unset: refuse to run without one.
\if :{?password}
\else
\warn 'no password for role' :role ': set its <NAME>_DB_PASSWORD'
DO $$ BEGIN RAISE EXCEPTION 'a capture role has no password (see the warning above)'; END $$;
\endif

-- REPLICATION lets it make logical slots and stream this cluster's WAL, which is why the legacy
-- data has a cluster of its own: the WAL here holds none of the mesh's data. The image's
-- pg_hba.conf admits replication connections (physical: a base backup) from loopback only, so
-- from another pod it streams logical decoding of one database (replication=database), no more.
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD :'password';
GRANT CONNECT ON DATABASE :"db" TO :"role";

\connect :"db"
-- Reads the schema's tables (the backfill copies them in the slot's exported snapshot), those
-- the app makes later included, and writes nothing.
GRANT USAGE ON SCHEMA :"schema" TO :"role";
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"role";
-- What the capture streams: every table of the schema (Postgres 15 and later), so that the
-- publication is there before the app's first start makes its tables, and the legacy code
-- stays untouched. Only a superuser may create it (postgres-role.sql's event trigger).
SELECT format('CREATE PUBLICATION %I FOR TABLES IN SCHEMA %I', :'publication', :'schema') WHERE NOT EXISTS (SELECT FROM pg_publication WHERE pubname = :'publication') \gexec
\connect postgres
\unset password
