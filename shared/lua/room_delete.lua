-- Remove a room and all its state. The outbox stays until the relay has delivered the
-- final room_deleted event; the event counter stays so seq keeps rising. Not while the
-- room is rebuilt. ARGV: room
local cfg, err = room_for_change()
if not cfg then
  return err
end
emit(cfg.inc, 'room_deleted', nil, {}, now_ms())
wipe_room(cfg.inc)
return 1
