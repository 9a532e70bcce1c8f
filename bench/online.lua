-- The scripted peer of PRESENCE.ONLINE user device TTL, on the usual layout:
--   lua:dev:{<user>}   hash   device -> deadline (ms); key TTL = the latest deadline + retention
--   lua:user:{<user>}  hash   status, since, last_seen, seq
--   lua:due            zset   "<user>\n<device>" scored by deadline (what a sweeper scans)
--   lua:online         zset   online users scored by when they came online
-- Publishes one JSON event when the user comes online. Key names are derived from ARGV here;
-- a cluster deployment would pass the same names as KEYS, which costs the same.
-- ARGV: user, device, ttl (ms), retention (ms). Reply: connected devices afterwards.
local user, device = ARGV[1], ARGV[2]
local ttl, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dkey = 'lua:dev:{' .. user .. '}'
local ukey = 'lua:user:{' .. user .. '}'
local deadline = now + ttl

local devices = redis.call('HGETALL', dkey)
local others, latest = 0, deadline
for i = 1, #devices, 2 do
  local d = tonumber(devices[i + 1])
  if devices[i] ~= device and d > now then
    others = others + 1
    if d > latest then latest = d end
  end
end
local was_connected = false
local old = redis.call('HGET', dkey, device)
if old and tonumber(old) > now then was_connected = true end

redis.call('HSET', dkey, device, deadline)
redis.call('PEXPIREAT', dkey, latest + retention)
redis.call('ZADD', 'lua:due', deadline, user .. '\n' .. device)
if others == 0 and not was_connected then
  local seq = redis.call('HINCRBY', ukey, 'seq', 1)
  redis.call('HSET', ukey, 'status', 'online', 'since', now, 'last_seen', now)
  redis.call('PERSIST', ukey)
  redis.call('ZADD', 'lua:online', now, user)
  redis.call('PUBLISH', 'lua:events', cjson.encode({
    user = user, status = 'online', prev = 'offline', reason = 'connect', device = device,
    devices = 1, last_seen = now, ts = now, seq = seq }))
else
  redis.call('HSET', ukey, 'last_seen', now)
end
return others + 1
