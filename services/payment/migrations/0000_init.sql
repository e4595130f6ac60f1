-- IF NOT EXISTS: the migrator creates the schema first to hold its journal.
CREATE SCHEMA IF NOT EXISTS "payment";
--> statement-breakpoint
CREATE TABLE "payment"."outbox" (
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
CREATE TABLE "payment"."payments" (
	"id" uuid PRIMARY KEY NOT NULL,
	"order_id" text NOT NULL,
	"idempotency_key" text NOT NULL,
	"amount_minor" bigint NOT NULL,
	"currency" char(3) NOT NULL,
	"status" text NOT NULL,
	"decline_reason" text,
	"provider_reference" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "payments_idempotency_key_unique" UNIQUE("idempotency_key"),
	CONSTRAINT "payments_amount_positive" CHECK ("payment"."payments"."amount_minor" > 0),
	CONSTRAINT "payments_status_valid" CHECK ("payment"."payments"."status" in ('pending', 'captured', 'declined', 'refunded'))
);
--> statement-breakpoint
CREATE INDEX "outbox_pending_idx" ON "payment"."outbox" USING btree ("seq") WHERE "payment"."outbox"."published_at" is null;--> statement-breakpoint
CREATE INDEX "payments_order_id_idx" ON "payment"."payments" USING btree ("order_id");