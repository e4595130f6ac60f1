ALTER TABLE "catalog"."sync_back" ADD COLUMN "seq" bigint NOT NULL GENERATED ALWAYS AS IDENTITY (sequence name "catalog"."sync_back_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1);--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD COLUMN "name" text;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD COLUMN "description" text;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD COLUMN "price_minor" bigint;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD COLUMN "currency" char(3);--> statement-breakpoint
-- A row from before this kept no values: it takes its product's current ones (the newest write
-- taken here), whose echo then clears it; one whose product is gone cannot come back and goes.
UPDATE "catalog"."sync_back" AS s SET "name" = p."name", "description" = p."description", "price_minor" = p."price_minor", "currency" = p."currency" FROM "catalog"."products" AS p WHERE p."sku" = s."sku";--> statement-breakpoint
DELETE FROM "catalog"."sync_back" WHERE "name" IS NULL;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ALTER COLUMN "name" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ALTER COLUMN "description" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ALTER COLUMN "price_minor" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ALTER COLUMN "currency" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD COLUMN "state" text DEFAULT 'pending' NOT NULL;--> statement-breakpoint
CREATE INDEX "sync_back_sku_seq_idx" ON "catalog"."sync_back" USING btree ("sku","seq");--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD CONSTRAINT "sync_back_state" CHECK ("catalog"."sync_back"."state" in ('pending', 'sent', 'refused'));
