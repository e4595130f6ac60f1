ALTER TABLE "payment"."payments" DROP CONSTRAINT "payments_status_valid";--> statement-breakpoint
-- NOT VALID, then VALIDATE: ADD CONSTRAINT ... CHECK scans the table under ACCESS EXCLUSIVE, blocking reads
-- and writes; VALIDATE scans under SHARE UPDATE EXCLUSIVE only. (The migrator runs a migration in one
-- transaction, so the DROP's ACCESS EXCLUSIVE lasts until its commit; applied statement by statement,
-- the scan no longer blocks.)
ALTER TABLE "payment"."payments" ADD CONSTRAINT "payments_status_valid" CHECK ("payment"."payments"."status" in ('pending', 'captured', 'declined', 'refunded', 'requires_action')) NOT VALID;--> statement-breakpoint
ALTER TABLE "payment"."payments" VALIDATE CONSTRAINT "payments_status_valid";