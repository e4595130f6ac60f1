CREATE TABLE "orders"."saga_audit" (
	"id" uuid PRIMARY KEY NOT NULL,
	"at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"order_id" text NOT NULL,
	"outcome" text NOT NULL,
	"detail" text NOT NULL,
	CONSTRAINT "saga_audit_action_valid" CHECK ("orders"."saga_audit"."action" in ('retry', 'compensate')),
	CONSTRAINT "saga_audit_outcome_valid" CHECK ("orders"."saga_audit"."outcome" in ('accepted', 'not_found', 'refused'))
);
--> statement-breakpoint
ALTER TABLE "orders"."sagas" ALTER COLUMN "created_at" SET DATA TYPE timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "orders"."sagas" ALTER COLUMN "created_at" SET DEFAULT now();--> statement-breakpoint
ALTER TABLE "orders"."orders" ADD COLUMN "request_fingerprint" text;--> statement-breakpoint
ALTER TABLE "orders"."sagas" ADD COLUMN "current_step" text;--> statement-breakpoint
ALTER TABLE "orders"."sagas" ADD COLUMN "attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "orders"."sagas" ADD COLUMN "next_attempt_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "saga_audit_order_idx" ON "orders"."saga_audit" USING btree ("order_id","at");--> statement-breakpoint
CREATE INDEX "sagas_state_created_idx" ON "orders"."sagas" USING btree ("state","created_at","id");