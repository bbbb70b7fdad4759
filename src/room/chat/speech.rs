//! What clients say: chat lines in a room, the commands, direct messages.

use super::membership::{reply, reply_error, to_room};
use super::*;

impl Chat {
    /// A text message: a raw client's line for its room, or a `wschat.v1`
    /// command or line.
    pub(super) fn text(&mut self, id: ClientId, text: String, now: u64, out: &mut Vec<Output>) {
        let Some(client) = self.clients.get(&id) else {
            // Gone while its message was in flight: nobody hears this.
            return reply_error(out, id, ErrorCode::NotMember, NOT_MEMBER_TEXT);
        };
        let nick = client.nick.clone();
        match client.mode {
            Mode::Raw => {
                let Some(&room) = client.rooms.first() else {
                    return log::warn!("({id}) a raw client in no room said something");
                };
                // As in the one-room chat: verbatim to the room's other raw
                // clients; control characters shown as U+FFFD to the rest.
                let shown: String = if text.chars().all(allowed_in_text) {
                    text.clone()
                } else {
                    let replace = |c| if allowed_in_text(c) { c } else { '\u{fffd}' };
                    text.chars().map(replace).collect()
                };
                if self.check_muted(id, Some(room), out) {
                    return;
                }
                let raw = Payload::Text(text.into());
                self.say(room, id, &nick, &shown, false, raw, now, out);
            }
            Mode::V1 => self.command(id, &nick, &text, now, out),
        }
    }

    fn command(&mut self, id: ClientId, nick: &str, text: &str, now: u64, out: &mut Vec<Output>) {
        let main = super::super::MAIN_ROOM;
        match parse_input(text) {
            Input::Say(line) => {
                let room = self.main_member(id, out);
                self.say_v1(id, nick, room, line, false, now, out)
            }
            Input::Action(line) => {
                let room = self.main_member(id, out);
                self.say_v1(id, nick, room, line, true, now, out)
            }
            Input::SayIn(room, line) => {
                let Some(room) = self.member_room(id, room, out) else {
                    return;
                };
                let room = Some(room);
                match line.strip_prefix("/me") {
                    Some(rest) if rest.trim().is_empty() => {
                        reply_error(out, id, ErrorCode::Usage, "usage: /say #room /me TEXT")
                    }
                    Some(rest) if rest.starts_with(char::is_whitespace) => {
                        self.say_v1(id, nick, room, rest.trim(), true, now, out)
                    }
                    _ => self.say_v1(id, nick, room, line, false, now, out),
                }
            }
            Input::Nick(wanted) => self.rename(id, wanted, now, out),
            Input::Who => self.who(id, main, out),
            Input::WhoIn(room) => self.who(id, room, out),
            Input::Rooms => self.list_rooms(id, out),
            Input::Join(room) => self.join_command(id, room, now, out),
            Input::Part(room) => self.part(id, room, now, out),
            Input::Topic(room, topic) => self.topic(id, nick, room, topic, now, out),
            Input::Msg(to, line) => self.direct(id, to, line, now, out),
            Input::Moderate(command) => self.moderate(id, command, now, out),
            Input::Unknown(command) => reply_error(
                out,
                id,
                ErrorCode::UnknownCommand,
                &format!("unknown command /{}", excerpt(command)),
            ),
            Input::Usage(usage) => reply_error(out, id, ErrorCode::Usage, usage),
            Input::Empty => reply_error(out, id, ErrorCode::EmptyMessage, "empty message"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn say_v1(
        &mut self,
        id: ClientId,
        nick: &str,
        room: Option<RoomId>,
        line: &str,
        action: bool,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(room) = room else {
            return; // not a member: told so already
        };
        if !line.chars().all(allowed_in_text) {
            let text = "messages may not contain control characters (tab and newline are fine)";
            return reply_error(out, id, ErrorCode::BadText, text);
        }
        if self.check_muted(id, Some(room), out) {
            return;
        }
        let raw = Payload::Text(raw_line(nick, line, action).into());
        self.say(room, id, nick, line, action, raw, now, out);
    }

    /// One chat line in `room`: numbered, kept in its history, and sent —
    /// the JSON to every v1 member, the sender included, so that all see
    /// one order; `raw` to every raw member but the sender.
    #[allow(clippy::too_many_arguments)]
    fn say(
        &mut self,
        room: RoomId,
        id: ClientId,
        nick: &str,
        text: &str,
        action: bool,
        raw: Payload,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let name = &self.room(room).name;
        let from = UserRef {
            nick,
            ..self.user_ref(id)
        };
        let event: Arc<str> = room_message_event(seq, name, from, text, now, action).into();
        out.push(Output::ToRoom {
            room,
            mode: Mode::Raw,
            payload: raw,
            except: Some(id),
        });
        out.push(Output::ToRoom {
            room,
            mode: Mode::V1,
            payload: Payload::Text(event.clone()),
            except: None,
        });
        out.push(Output::Said(event.clone()));
        self.keep(room, event, out);
    }

    pub(super) fn binary(&mut self, id: ClientId, data: Vec<u8>, out: &mut Vec<Output>) {
        let Some(client) = self.clients.get(&id) else {
            return reply_error(out, id, ErrorCode::NotMember, NOT_MEMBER_TEXT);
        };
        match (client.mode, client.rooms.first()) {
            (Mode::Raw, Some(&room)) => out.push(Output::ToRoom {
                room,
                mode: Mode::Raw,
                payload: Payload::Binary(data),
                except: Some(id),
            }),
            (Mode::Raw, None) => log::warn!("({id}) a raw client in no room sent binary"),
            (Mode::V1, _) => reply_error(
                out,
                id,
                ErrorCode::TextOnly,
                "wschat.v1 takes text messages only",
            ),
        }
    }

    /// `/nick NAME`: nicknames are global. The `nick` event goes to every
    /// `wschat.v1` client (a superset of those sharing a room with the
    /// renamed one, and one frame for all).
    fn rename(&mut self, id: ClientId, wanted: &str, now: u64, out: &mut Vec<Output>) {
        if self.refuse_rename(id, out) {
            return;
        }
        if let Err(reason) = validate_nick(wanted) {
            return reply_error(out, id, ErrorCode::NickInvalid, reason);
        }
        let key = nick_key(wanted);
        if self.owned_by_other(id, wanted) {
            let text = format!("nickname {wanted} belongs to a signed-in user");
            return reply_error(out, id, ErrorCode::NickTaken, &text);
        }
        if self.nicks.get(&key).is_some_and(|holder| *holder != id) {
            let text = format!("nickname {wanted} is already taken");
            return reply_error(out, id, ErrorCode::NickTaken, &text);
        }
        let client = self.clients.get_mut(&id).expect("connected");
        if client.nick == wanted {
            let text = format!("you are already {wanted}");
            return reply_error(out, id, ErrorCode::NickUnchanged, &text);
        }
        let old = std::mem::replace(&mut client.nick, wanted.to_string());
        self.nicks.remove(&nick_key(&old));
        self.nicks.insert(key, id);
        if client.rooms.contains(&MAIN) {
            self.main_tail = None;
        }
        log::info!(
            "({id}) is now known as {} (was {})",
            wanted.escape_debug(),
            old.escape_debug()
        );
        out.push(Output::Broadcast {
            mode: Mode::V1,
            payload: Payload::Text(nick_event(id, wanted, &old, now).into()),
            except: None,
        });
    }

    fn who(&self, id: ClientId, room: &str, out: &mut Vec<Output>) {
        if let Some(room) = self.member_room(id, room, out) {
            let event = room_users_event(&self.room(room).name, self.users(room).into_iter());
            reply(out, id, event);
        }
    }

    fn list_rooms(&self, id: ClientId, out: &mut Vec<Output>) {
        reply(out, id, self.visible_rooms(id));
    }

    /// `/topic #room [TEXT]`: set (empty clears) or asked.
    #[allow(clippy::too_many_arguments)]
    fn topic(
        &mut self,
        id: ClientId,
        nick: &str,
        room: &str,
        topic: Option<&str>,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let Some(room) = self.member_room(id, room, out) else {
            return;
        };
        let Some(topic) = topic else {
            let chat_room = self.room(room);
            let event = topic_event(&chat_room.name, chat_room.topic.as_deref(), None, now);
            return reply(out, id, event);
        };
        if !topic.chars().all(|c| c != '\n' && allowed_in_text(c)) {
            let text = "a topic may not contain control characters or newlines";
            return reply_error(out, id, ErrorCode::BadText, text);
        }
        if self.room(room).oplock && !self.is_operator(id, Some(room)) {
            let text = format!(
                "only an operator of {} may set its topic",
                self.room(room).name
            );
            return reply_error(out, id, ErrorCode::NotAllowed, &text);
        }
        if topic.chars().count() > MAX_TOPIC_CHARS {
            let text = format!("a topic is at most {MAX_TOPIC_CHARS} characters");
            return reply_error(out, id, ErrorCode::Usage, &text);
        }
        let topic: Option<Arc<str>> = (!topic.is_empty()).then(|| topic.into());
        self.room_mut(room).topic = topic.clone();
        let chat_room = self.room(room);
        let name = &chat_room.name;
        let dropped = chat_room.history.dropped_through();
        out.push(Output::Record(
            room_record(name, topic.as_deref(), dropped).into(),
        ));
        let by = UserRef {
            nick,
            ..self.user_ref(id)
        };
        let event = topic_event(name, topic.as_deref(), Some(by), now);
        out.push(to_room(room, event, None));
    }

    /// `/msg NICK TEXT`: to every connection of NICK and back to every
    /// connection of the sender; not numbered; kept per pair when both
    /// are signed in.
    fn direct(&mut self, id: ClientId, to: &str, line: &str, now: u64, out: &mut Vec<Output>) {
        let Some(target) = self.find_nick(to) else {
            let text = format!("nobody is called {}", excerpt(to));
            return reply_error(out, id, ErrorCode::NoSuchUser, &text);
        };
        let target_client = &self.clients[&target];
        if target_client.mode == Mode::Raw {
            let text = format!(
                "{} is a raw client and cannot receive direct messages",
                excerpt(to)
            );
            return reply_error(out, id, ErrorCode::NoSuchUser, &text);
        }
        if !line.chars().all(allowed_in_text) {
            let text = "messages may not contain control characters (tab and newline are fine)";
            return reply_error(out, id, ErrorCode::BadText, text);
        }
        if self.check_muted(id, None, out) {
            return;
        }
        let event = direct_event(self.user_ref(id), self.user_ref(target), line, now);
        let mut to: BTreeSet<ClientId> = self.connections_of(target).into_iter().collect();
        to.extend(self.connections_of(id));
        for conn in to {
            reply(out, conn, event.clone());
        }
        self.keep_direct(id, target, &event, out);
    }

    /// `#main` if client `id` is in it (plain text, every message of the
    /// one-room chat: no name to read); else `not_in_room` is replied.
    fn main_member(&self, id: ClientId, out: &mut Vec<Output>) -> Option<RoomId> {
        if self.room(MAIN).members.contains(&id) {
            return Some(MAIN);
        }
        self.member_room(id, super::super::MAIN_ROOM, out)
    }

    /// The client whose nickname is `nick` (ignoring case and fullwidth
    /// forms), a chosen one or a guest name still held.
    pub(super) fn find_nick(&self, nick: &str) -> Option<ClientId> {
        let key = nick_key(nick);
        if let Some(id) = self.nicks.get(&key) {
            return Some(*id);
        }
        let guest: ClientId = key.strip_prefix("guest-")?.parse().ok()?;
        self.clients
            .get(&guest)
            .filter(|client| nick_key(&client.nick) == key)
            .map(|_| guest)
    }
}
