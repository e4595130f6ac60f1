ALTER TABLE "catalog"."sync_back" ADD COLUMN "seq" bigint NOT NULL GENERATED ALWAYS AS IDENTITY (sequence name "catalog"."sync_back_seq_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1);--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD COLUMN "name" text NOT NULL;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD COLUMN "description" text NOT NULL;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD COLUMN "price_minor" bigint NOT NULL;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD COLUMN "currency" char(3) NOT NULL;--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD COLUMN "state" text DEFAULT 'pending' NOT NULL;--> statement-breakpoint
CREATE INDEX "sync_back_sku_seq_idx" ON "catalog"."sync_back" USING btree ("sku","seq");--> statement-breakpoint
ALTER TABLE "catalog"."sync_back" ADD CONSTRAINT "sync_back_state" CHECK ("catalog"."sync_back"."state" in ('pending', 'sent', 'refused'));