-- stage_job: the id and record of a stage's job of a document, the record created queued the
-- first time (next_job.lua, end_job.lua). A document keeps the ids of its later stages' jobs
-- from its creation (`reserved_{stage}_job`); one stored before it did needs `candidate`, an id
-- no job has ('' when there is none: then nothing is made and this returns nil).
--   document: the document's hash; jobs_by_update: zset; field: '{stage}_job';
--   job_prefix: the tenant's job key without the id (under the document's hash tag);
--   first, last: where in ARGV the new job's field/value items, without its id, are.
-- Returns the job's record as HGETALL's field/value list, or nil.
local function stage_job(document, jobs_by_update, field, candidate, job_prefix, updated_ms,
                         first, last)
  local job_id = redis.call('HGET', document, field)
  if not job_id then
    job_id = redis.call('HGET', document, 'reserved_' .. field)
    if not job_id then
      if candidate == '' then return nil end
      job_id = candidate
    end
    redis.call('HSET', document, field, job_id)
  end
  local job = job_prefix .. job_id
  if redis.call('EXISTS', job) == 0 then
    redis.call('HSET', job, 'job_id', job_id, unpack(ARGV, first, last))
    redis.call('ZADD', jobs_by_update, updated_ms, job_id)
  end
  return redis.call('HGETALL', job)
end
