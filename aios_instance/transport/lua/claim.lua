-- Claim up to ARGV[1] packets: move them from the input list to this instance's processing
-- list. KEYS: input, processing, attempts. ARGV: max count, ahead ('1': first deliveries only).
-- Returns {items} or {items, attempt counts} when any packet was ever requeued. A requeued
-- packet is claimed alone, and a batch stops before one: if it is a poison packet that kills
-- the process, only its own delivery count grows, not its batch-mates'. A claim made ahead
-- (while another batch runs) takes no requeued packet at all, for the same reason.
local items = redis.call('RPOP', KEYS[1], ARGV[1])
if not items then return {} end
if redis.call('HLEN', KEYS[3]) == 0 then
  redis.call('LPUSH', KEYS[2], unpack(items))
  return {items}
end
local counts = {}
local take = #items
for i = 1, #items do
  counts[i] = tonumber(redis.call('HGET', KEYS[3], redis.sha1hex(items[i])) or '0')
  if counts[i] > 0 then
    take = (i == 1 and ARGV[2] ~= '1') and 1 or i - 1
    break
  end
end
for i = #items, take + 1, -1 do redis.call('RPUSH', KEYS[1], items[i]) end
if take == 0 then return {} end
local claimed = {unpack(items, 1, take)}
redis.call('LPUSH', KEYS[2], unpack(claimed))
return {claimed, {unpack(counts, 1, take)}}
