-- One database per service, each reached only through that service's own role, which is no
-- superuser and owns only its service's schema (postgres-role.sql). Run by psql as the admin,
-- and only there (the postgres-roles Job in k8s, the postgres-roles one-shot in compose), with
-- each role's password in <NAME>_DB_PASSWORD. Safe to run again.
\set ON_ERROR_STOP on
-- No role but the admin connects to the maintenance database.
REVOKE ALL ON DATABASE postgres FROM PUBLIC;

-- begin generated: roles
\getenv password INVENTORY_DB_PASSWORD
\set role inventory
\set db inventory
\set schema inventory
\ir postgres-role.sql

\getenv password PAYMENT_DB_PASSWORD
\set role payment
\set db payment
\set schema payment
\ir postgres-role.sql

\getenv password CATALOG_DB_PASSWORD
\set role catalog
\set db catalog
\set schema catalog
\ir postgres-role.sql

\getenv password ORDER_DB_PASSWORD
\set role order
\set db order
\set schema orders
\ir postgres-role.sql

\getenv password NOTIFICATION_DB_PASSWORD
\set role notification
\set db notification
\set schema notification
\ir postgres-role.sql
-- end generated: roles
