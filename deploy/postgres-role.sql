-- One service's role, database and schema, included by postgres-init.sql once per service with
-- :role, :db, :schema and :password set. Every statement can run again: it is also how a
-- database made before the roles existed moves over to its service's role.

-- \getenv leaves :password as it was when the variable is unset, so the include clears it at
-- its end and refuses to run without one: a role never gets another service's password.
\if :{?password}
\else
\warn 'no password for role' :role ': set its <NAME>_DB_PASSWORD'
DO $$ BEGIN RAISE EXCEPTION 'a service role has no password (see the warning above)'; END $$;
\endif

-- A login and nothing more: no superuser (COPY ... TO PROGRAM, every table), no CREATEDB,
-- no CREATEROLE, no replication, no bypassing row security.
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'password';

-- Its database, which only it (and the admin) may connect to. CREATE on it is what the migrator's
-- CREATE SCHEMA IF NOT EXISTS needs even when the schema is there; it is this service's own database.
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE :"db" TO :"role";

\connect :"db"
-- Nobody else may create in public (Postgres 15 already has it so) or use the role's schema.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION :"role";
ALTER SCHEMA :"schema" OWNER TO :"role";
REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;
-- CREATE on the database would also let the role make schemas, extensions and publications of
-- its own; an event trigger refuses those to every role but a superuser, so the role owns its
-- schema alone (CREATE SCHEMA IF NOT EXISTS of a schema that is there creates nothing).
CREATE SCHEMA IF NOT EXISTS meshwork_admin;
REVOKE ALL ON SCHEMA meshwork_admin FROM PUBLIC;
CREATE OR REPLACE FUNCTION meshwork_admin.refuse_foreign_objects() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
DECLARE
  created record;
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    RETURN;
  END IF;
  FOR created IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    RAISE EXCEPTION '% %: a service role owns only its own schema', created.command_tag, created.object_identity;
  END LOOP;
END
$fn$;
REVOKE ALL ON FUNCTION meshwork_admin.refuse_foreign_objects() FROM PUBLIC;
DROP EVENT TRIGGER IF EXISTS meshwork_refuse_foreign_objects;
CREATE EVENT TRIGGER meshwork_refuse_foreign_objects ON ddl_command_end
  WHEN TAG IN ('CREATE SCHEMA', 'CREATE EXTENSION', 'CREATE PUBLICATION')
  EXECUTE FUNCTION meshwork_admin.refuse_foreign_objects();
-- Tables, views and sequences the superuser made before (the schema's own migration journal
-- included) change owner; a sequence that belongs to a column follows its table.
SELECT format('ALTER %s %I.%I OWNER TO %I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, n.nspname, c.relname, :'role')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = :'schema' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = :'role')
   AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
\gexec
\connect postgres
\unset password
