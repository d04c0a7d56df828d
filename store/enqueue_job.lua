-- What arq's `enqueue_job` does, in one step instead of its WATCH, EXISTS and MULTI (store/
-- enqueue.py `enqueue_stage`): a job whose job key or result key exists is not enqueued again.
-- Returns 1 (enqueued) or 0 (there already). Runs on arq's Redis: its keys are arq's.
local job_key = KEYS[1]          -- arq's job key: the serialized job
local result_key = KEYS[2]       -- arq's result key of the same job id
local queue = KEYS[3]            -- zset: the queue, scored by when a job is due (ms)
local job_id = ARGV[1]
local payload = ARGV[2]
local score_ms = ARGV[3]
local expires_ms = ARGV[4]

if redis.call('EXISTS', job_key, result_key) > 0 then return 0 end
redis.call('SET', job_key, payload, 'PX', expires_ms)
redis.call('ZADD', queue, score_ms, job_id)
return 1
