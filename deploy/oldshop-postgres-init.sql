-- oldshop's own cluster (a legacy deployable of services/mesh.ts): its role, database and schema
-- (postgres-role.sql), and catalog's change data capture role catalog_cdc and the publication
-- oldshop_catalog there (postgres-capture-role.sql). Run by psql as this cluster's admin, and only
-- there (the oldshop-postgres-roles Job in k8s and one-shot in compose). Safe to run again.
-- Generated from the manifest by deploy/generate-deploy.ts.
\set ON_ERROR_STOP on
-- No role but the admin connects to the maintenance database.
REVOKE ALL ON DATABASE postgres FROM PUBLIC;

\getenv password OLDSHOP_DB_PASSWORD
\set role oldshop
\set db oldshop
\set schema oldshop
\ir postgres-role.sql

\getenv password CATALOG_CDC_DB_PASSWORD
\set role catalog_cdc
\set db oldshop
\set schema oldshop
\set owner oldshop
\set publication oldshop_catalog
\ir postgres-capture-role.sql
