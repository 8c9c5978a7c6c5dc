-- Claim an admission (admitted -> active) or keep a session alive.
-- ARGV: room, position_id, mode ('claim': only from admitted; 'touch', called with a valid
-- access token: claim, extend a session, or put back a visit whose admission was lost)
-- Extending a session moves its deadline in steps (see session_step), each an `extended`
-- event, so a recovery keeps long visits. A session never lasts past max_session from its
-- start (see session_end).
local position_id, mode = ARGV[2], ARGV[3]
local cfg, err = room_for_change()
if not cfg then
  return err
end
local p = get_person(position_id)
if not p then
  return fail('position_not_found')
end
local now = now_ms()
if p.state == 'admitted' then
  if p.claim_deadline < now then
    return fail('admission_expired')
  end
  mark_active(position_id, p, now, session_end(p, cfg, now))
  emit(cfg.inc, 'activated', position_id, { session_deadline = p.session_deadline }, now)
elseif p.state == 'active' then
  if mode == 'claim' then
    return fail('already_claimed')
  end
  local deadline = session_step(p, cfg, now)
  if deadline then
    extend_session(position_id, p, deadline)
    emit(cfg.inc, 'extended', position_id, { session_deadline = deadline }, now)
  end
elseif p.state == 'waiting' and mode == 'touch' then
  -- a valid access token (the gateway checked it) for a place the store has in line: its
  -- admission was lost with the store before it reached the stream. It is made again, with
  -- the visit it is on, rather than the person being admitted a second time later.
  mark_admitted(position_id, p, now, now)
  emit(cfg.inc, 'admitted', position_id, { claim_deadline = now, size = p.size,
                                           arrival = p.arrival, restored = true }, now)
  mark_active(position_id, p, now, session_end(p, cfg, now))
  emit(cfg.inc, 'activated', position_id, { session_deadline = p.session_deadline }, now)
elseif p.state == 'waiting' then
  return fail('not_admitted')
else
  return fail('session_ended')
end
return view(position_id, p, cfg, now, false)
