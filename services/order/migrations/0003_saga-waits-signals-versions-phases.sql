CREATE TABLE "orders"."saga_signals" (
	"saga_id" uuid NOT NULL,
	"signal_id" text NOT NULL,
	"name" text NOT NULL,
	"payload" jsonb NOT NULL,
	"received_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"consumed_at" timestamp (3) with time zone,
	CONSTRAINT "saga_signals_saga_id_signal_id_pk" PRIMARY KEY("saga_id","signal_id")
);
--> statement-breakpoint
CREATE TABLE "orders"."saga_waits" (
	"saga_id" uuid NOT NULL,
	"step_index" integer NOT NULL,
	"name" text NOT NULL,
	"kind" text NOT NULL,
	"started_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"due_at" timestamp (3) with time zone NOT NULL,
	"ended_at" timestamp (3) with time zone,
	"outcome" text,
	"signal_id" text,
	CONSTRAINT "saga_waits_saga_id_step_index_name_pk" PRIMARY KEY("saga_id","step_index","name"),
	CONSTRAINT "saga_waits_kind_valid" CHECK ("orders"."saga_waits"."kind" in ('timer', 'signal')),
	CONSTRAINT "saga_waits_outcome_valid" CHECK ("orders"."saga_waits"."outcome" in ('fired', 'signalled', 'timed-out', 'interrupted'))
);
--> statement-breakpoint
ALTER TABLE "orders"."sagas" DROP CONSTRAINT "sagas_state_valid";--> statement-breakpoint
ALTER TABLE "orders"."saga_steps" ADD COLUMN "phases" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "orders"."sagas" ADD COLUMN "version" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "orders"."sagas" ADD COLUMN "wake_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "orders"."sagas" ADD COLUMN "waiting_for" text;--> statement-breakpoint
ALTER TABLE "orders"."sagas" ADD COLUMN "signals_received" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "orders"."saga_signals" ADD CONSTRAINT "saga_signals_saga_id_sagas_id_fk" FOREIGN KEY ("saga_id") REFERENCES "orders"."sagas"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "orders"."saga_waits" ADD CONSTRAINT "saga_waits_saga_id_sagas_id_fk" FOREIGN KEY ("saga_id") REFERENCES "orders"."sagas"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "sagas_waking_idx" ON "orders"."sagas" USING btree ("wake_at") WHERE "orders"."sagas"."state" = 'waiting';--> statement-breakpoint
-- NOT VALID, then VALIDATE: ADD CONSTRAINT ... CHECK scans the table under ACCESS EXCLUSIVE, blocking reads
-- and writes; VALIDATE scans under SHARE UPDATE EXCLUSIVE only. (The migrator runs a migration in one
-- transaction, so the DROP's ACCESS EXCLUSIVE lasts until its commit; applied statement by statement,
-- the scan no longer blocks.)
ALTER TABLE "orders"."sagas" ADD CONSTRAINT "sagas_state_valid" CHECK ("orders"."sagas"."state" in ('running', 'compensating', 'waiting', 'completed', 'compensated', 'parked')) NOT VALID;--> statement-breakpoint
ALTER TABLE "orders"."sagas" VALIDATE CONSTRAINT "sagas_state_valid";