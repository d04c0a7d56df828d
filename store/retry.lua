-- Retry a failed or cancelled document (cancel.py `retry`) from the stage that did not finish:
-- that stage's job is queued again as its next attempt (arq's try counter is set to the attempts
-- that ran, so the worker's next try is the next attempt; `attempts_before` keeps them for
-- MAX_ATTEMPTS), the document is queued and back in flight, and the job is marked pending
-- enqueue (store/pending.py), in one step. The stages done before it keep their results and do
-- not run again. arq's keys live on the queue's server, which this script does not touch: the
-- caller checked there first that the job's last attempt no longer runs (its in-progress mark),
-- and puts the job back on arq's queue after it (store/requeue_job.lua), or the sweeper does.
-- Replies: {'ok', stage, job_id, attempt}, {'state', state} (not failed nor cancelled),
-- {'missing'}, {'stale'} (the records changed since the caller read them).
local document = KEYS[1]         -- hash: the document's record
local in_flight = KEYS[2]        -- set: the tenant's documents queued or running
local jobs_by_update = KEYS[3]   -- zset
local job = KEYS[4]              -- hash: the job to run again
local pending = KEYS[5]          -- zset: job ids not yet known to be on arq's queue, by ms
local document_id = ARGV[1]
local job_prefix = ARGV[2]       -- a job's key without its id (the tenant's, keys.py)
local stage = ARGV[3]            -- the stage the caller found unfinished, and its job
local job_id = ARGV[4]
local updated_ms = ARGV[5]       -- also the job's score in `pending`

local state = redis.call('HGET', document, 'state')
if not state then return {'missing'} end
if state ~= 'failed' and state ~= 'cancelled' then return {'state', state} end

local current, current_id
for _, name in ipairs({'parse', 'chunk', 'embed'}) do
  local id = redis.call('HGET', document, name .. '_job')
  if not id then return {'stale'} end
  if redis.call('HGET', job_prefix .. id, 'state') ~= 'done' then
    current, current_id = name, id
    break
  end
end
if current ~= stage or current_id ~= job_id or job_prefix .. job_id ~= job then
  return {'stale'}
end
local stored = redis.call('HMGET', job, 'state', 'attempt')
if stored[1] ~= 'failed' then return {'stale'} end

local ran = tonumber(stored[2] or '1')
redis.call('HDEL', job, 'ended', 'announced', 'error', 'note', 'started_at', 'finished_at')
redis.call('HSET', job, 'state', 'queued', 'progress', '0', 'attempt', ran + 1,
  'attempts_before', ran, 'updated_ms', updated_ms)
redis.call('ZADD', jobs_by_update, updated_ms, job_id)
redis.call('HSET', document, 'state', 'queued')
redis.call('HDEL', document, 'error')
redis.call('SADD', in_flight, document_id)
redis.call('ZADD', pending, updated_ms, job_id)
return {'ok', stage, job_id, ran + 1}
