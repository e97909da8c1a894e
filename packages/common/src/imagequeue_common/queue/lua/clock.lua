-- clock: the server time of the node that holds this queue (KEYS[1]: any key of the queue,
-- so that in a cluster it is asked on the queue's own node, as every script's now_ms() is).
-- Returns {seconds, microseconds}.
return redis.call('TIME')
