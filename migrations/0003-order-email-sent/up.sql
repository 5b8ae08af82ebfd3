-- When the order's confirmation email was delivered (outbox written or
-- accepted by the provider). The email job's row says the same while it
-- exists; this column keeps the answer after finished or dead jobs are
-- pruned or deleted from the queue.
ALTER TABLE orders ADD COLUMN email_sent_at TEXT;

-- Set in the same transaction that acknowledges the job, whoever runs it.
-- The job's idempotency key is 'order-confirmation/' (19 characters)
-- followed by the order id.
CREATE TRIGGER orders_email_sent
AFTER UPDATE OF status ON Jobs
WHEN NEW.status = 'Done' AND NEW.job_type = 'email.order_confirmation'
     AND NEW.idempotency_key LIKE 'order-confirmation/%'
BEGIN
    UPDATE orders
    SET email_sent_at = COALESCE(email_sent_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    WHERE id = substr(NEW.idempotency_key, 20);
END;
