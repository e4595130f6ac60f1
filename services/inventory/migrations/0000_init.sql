-- IF NOT EXISTS: the migrator creates the schema first to hold its journal.
CREATE SCHEMA IF NOT EXISTS "inventory";
--> statement-breakpoint
CREATE TABLE "inventory"."outbox" (
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
CREATE TABLE "inventory"."products" (
	"sku" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"price_minor" bigint NOT NULL,
	"currency" char(3) NOT NULL,
	"available" integer NOT NULL,
	"reserved" integer DEFAULT 0 NOT NULL,
	"sold" integer DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "products_available_non_negative" CHECK ("inventory"."products"."available" >= 0),
	CONSTRAINT "products_reserved_non_negative" CHECK ("inventory"."products"."reserved" >= 0),
	CONSTRAINT "products_sold_non_negative" CHECK ("inventory"."products"."sold" >= 0),
	CONSTRAINT "products_price_non_negative" CHECK ("inventory"."products"."price_minor" >= 0)
);
--> statement-breakpoint
CREATE TABLE "inventory"."reservation_items" (
	"reservation_id" uuid NOT NULL,
	"sku" text NOT NULL,
	"quantity" integer NOT NULL,
	CONSTRAINT "reservation_items_reservation_id_sku_pk" PRIMARY KEY("reservation_id","sku"),
	CONSTRAINT "reservation_items_quantity_positive" CHECK ("inventory"."reservation_items"."quantity" > 0)
);
--> statement-breakpoint
CREATE TABLE "inventory"."reservations" (
	"id" uuid PRIMARY KEY NOT NULL,
	"order_id" text NOT NULL,
	"status" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "reservations_order_id_unique" UNIQUE("order_id"),
	CONSTRAINT "reservations_status_valid" CHECK ("inventory"."reservations"."status" in ('reserved', 'released', 'committed'))
);
--> statement-breakpoint
ALTER TABLE "inventory"."reservation_items" ADD CONSTRAINT "reservation_items_reservation_id_reservations_id_fk" FOREIGN KEY ("reservation_id") REFERENCES "inventory"."reservations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "inventory"."reservation_items" ADD CONSTRAINT "reservation_items_sku_products_sku_fk" FOREIGN KEY ("sku") REFERENCES "inventory"."products"("sku") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "outbox_pending_idx" ON "inventory"."outbox" USING btree ("seq") WHERE "inventory"."outbox"."published_at" is null;