CREATE TABLE "catalog"."inbox" (
	"consumer" text NOT NULL,
	"event_id" uuid NOT NULL,
	"event_type" text NOT NULL,
	"processed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "inbox_consumer_event_id_pk" PRIMARY KEY("consumer","event_id")
);
--> statement-breakpoint
CREATE TABLE "catalog"."sync_back" (
	"event_id" uuid PRIMARY KEY NOT NULL,
	"sku" text NOT NULL,
	"written_at" timestamp with time zone DEFAULT now() NOT NULL,
	"refusal" text
);
--> statement-breakpoint
CREATE INDEX "inbox_processed_idx" ON "catalog"."inbox" USING btree ("processed_at");