-- IF NOT EXISTS: the migrator creates the schema first to hold its journal.
CREATE SCHEMA IF NOT EXISTS "orders";
--> statement-breakpoint
CREATE TABLE "orders"."order_lines" (
	"order_id" uuid NOT NULL,
	"line_no" integer NOT NULL,
	"sku" text NOT NULL,
	"name" text NOT NULL,
	"quantity" integer NOT NULL,
	"unit_price_minor" bigint NOT NULL,
	CONSTRAINT "order_lines_order_id_line_no_pk" PRIMARY KEY("order_id","line_no"),
	CONSTRAINT "order_lines_quantity_positive" CHECK ("orders"."order_lines"."quantity" > 0)
);
--> statement-breakpoint
CREATE TABLE "orders"."orders" (
	"id" uuid PRIMARY KEY NOT NULL,
	"customer_id" text NOT NULL,
	"request_id" text NOT NULL,
	"status" text NOT NULL,
	"total_minor" bigint NOT NULL,
	"currency" char(3) NOT NULL,
	"cancel_reason" text,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "orders_customer_request_unique" UNIQUE("customer_id","request_id"),
	CONSTRAINT "orders_status_valid" CHECK ("orders"."orders"."status" in ('pending', 'confirmed', 'cancelled')),
	CONSTRAINT "orders_total_non_negative" CHECK ("orders"."orders"."total_minor" >= 0)
);
--> statement-breakpoint
CREATE TABLE "orders"."outbox" (
	"id" uuid PRIMARY KEY NOT NULL,
	"seq" bigserial NOT NULL,
	"aggregate_type" text NOT NULL,
	"aggregate_id" text NOT NULL,
	"event_type" text NOT NULL,
	"payload" "bytea" NOT NULL,
	"headers" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"published_at" timestamp with time zone,
	CONSTRAINT "outbox_seq_unique" UNIQUE("seq")
);
--> statement-breakpoint
CREATE TABLE "orders"."saga_steps" (
	"saga_id" uuid NOT NULL,
	"step_index" integer NOT NULL,
	"name" text NOT NULL,
	"state" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "saga_steps_saga_id_step_index_pk" PRIMARY KEY("saga_id","step_index"),
	CONSTRAINT "saga_steps_state_valid" CHECK ("orders"."saga_steps"."state" in ('started', 'succeeded', 'failed', 'compensated'))
);
--> statement-breakpoint
CREATE TABLE "orders"."sagas" (
	"id" uuid PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"aggregate_id" text NOT NULL,
	"state" text DEFAULT 'running' NOT NULL,
	"payload" jsonb NOT NULL,
	"failure_reason" text,
	"last_error" text,
	"cancel_requested" boolean DEFAULT false NOT NULL,
	"lease_owner" text,
	"lease_expires_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "sagas_aggregate_id_unique" UNIQUE("aggregate_id"),
	CONSTRAINT "sagas_state_valid" CHECK ("orders"."sagas"."state" in ('running', 'compensating', 'completed', 'compensated', 'parked'))
);
--> statement-breakpoint
ALTER TABLE "orders"."order_lines" ADD CONSTRAINT "order_lines_order_id_orders_id_fk" FOREIGN KEY ("order_id") REFERENCES "orders"."orders"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "orders"."saga_steps" ADD CONSTRAINT "saga_steps_saga_id_sagas_id_fk" FOREIGN KEY ("saga_id") REFERENCES "orders"."sagas"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "orders_customer_recent_idx" ON "orders"."orders" USING btree ("customer_id","created_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "outbox_pending_idx" ON "orders"."outbox" USING btree ("seq") WHERE "orders"."outbox"."published_at" is null;--> statement-breakpoint
CREATE INDEX "sagas_unfinished_idx" ON "orders"."sagas" USING btree ("created_at") WHERE "orders"."sagas"."state" in ('running', 'compensating');