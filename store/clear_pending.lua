-- Clear a job's pending-enqueue mark once the job is on arq's queue (store/pending.py), if the
-- mark is still the one the caller read (its time, ms): a retry that marked the job again since
-- keeps its own mark. Returns 1 (cleared) or 0.
local pending = KEYS[1]          -- zset: the tenant's job ids not yet known to be on arq's queue
local job_id = ARGV[1]
local marked_ms = tonumber(ARGV[2])

local score = redis.call('ZSCORE', pending, job_id)
if score and tonumber(score) == marked_ms then return redis.call('ZREM', pending, job_id) end
return 0
