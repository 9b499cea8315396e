/* librabbitmq (rabbitmq-c, Debian's librabbitmq-dev) against WarrenMQ.
 *
 * Usage: roundtrip HOST PORT QUEUE
 * Declares QUEUE, publishes one persistent message with a header in confirm mode and
 * waits for its basic.ack, fetches it with basic.get and acks it, then checks the
 * failure path: a passive declare of a missing queue closes the channel with 404.
 * Prints one JSON object; exits 1 with the reason on stderr.
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what) {
  fprintf(stderr, "%s failed\n", what);
  exit(1);
}

static void check(amqp_rpc_reply_t reply, const char *what) {
  if (reply.reply_type != AMQP_RESPONSE_NORMAL) die(what);
}

int main(int argc, char **argv) {
  if (argc != 4) die("usage: roundtrip HOST PORT QUEUE");
  amqp_bytes_t queue = amqp_cstring_bytes(argv[3]);
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *sock = amqp_tcp_socket_new(conn);
  if (!sock || amqp_socket_open(sock, argv[1], atoi(argv[2])) != AMQP_STATUS_OK)
    die("connect");
  check(amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
        "login");
  amqp_channel_open(conn, 1);
  check(amqp_get_rpc_reply(conn), "channel.open");
  amqp_confirm_select(conn, 1);
  check(amqp_get_rpc_reply(conn), "confirm.select");
  amqp_queue_declare(conn, 1, queue, 0, 1, 0, 0, amqp_empty_table);
  check(amqp_get_rpc_reply(conn), "queue.declare");

  amqp_table_entry_t header;
  header.key = amqp_cstring_bytes("lang");
  header.value.kind = AMQP_FIELD_KIND_UTF8;
  header.value.value.bytes = amqp_cstring_bytes("c");
  amqp_basic_properties_t props;
  memset(&props, 0, sizeof props);
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                 AMQP_BASIC_HEADERS_FLAG;
  props.content_type = amqp_cstring_bytes("text/plain");
  props.delivery_mode = 2;
  props.headers.num_entries = 1;
  props.headers.entries = &header;
  if (amqp_basic_publish(conn, 1, amqp_empty_bytes, queue, 1, 0, &props,
                         amqp_cstring_bytes("hello from C")) != AMQP_STATUS_OK)
    die("basic.publish");
  amqp_frame_t frame;
  if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK ||
      frame.frame_type != AMQP_FRAME_METHOD || frame.payload.method.id != AMQP_BASIC_ACK_METHOD)
    die("publisher confirm");
  int confirmed = 1;

  amqp_rpc_reply_t got = amqp_basic_get(conn, 1, queue, 0);
  check(got, "basic.get");
  if (got.reply.id != AMQP_BASIC_GET_OK_METHOD) die("basic.get-ok");
  uint64_t tag = ((amqp_basic_get_ok_t *)got.reply.decoded)->delivery_tag;
  amqp_message_t message;
  check(amqp_read_message(conn, 1, &message, 0), "read message");
  char body[64] = {0};
  memcpy(body, message.body.bytes, message.body.len < 63 ? message.body.len : 63);
  char lang[16] = {0};
  amqp_table_t *headers = &message.properties.headers;
  for (int i = 0; i < headers->num_entries; i++) {
    amqp_table_entry_t *e = &headers->entries[i];
    if (e->key.len == 4 && memcmp(e->key.bytes, "lang", 4) == 0 &&
        (e->value.kind == AMQP_FIELD_KIND_UTF8 || e->value.kind == AMQP_FIELD_KIND_BYTES))
      memcpy(lang, e->value.value.bytes.bytes,
             e->value.value.bytes.len < 15 ? e->value.value.bytes.len : 15);
  }
  int mode = message.properties.delivery_mode;
  amqp_destroy_message(&message);
  if (amqp_basic_ack(conn, 1, tag, 0) != AMQP_STATUS_OK) die("basic.ack");

  /* the failure path: passive declare of a missing queue */
  amqp_queue_declare(conn, 1, amqp_cstring_bytes("c.missing"), 1, 0, 0, 0, amqp_empty_table);
  amqp_rpc_reply_t missing = amqp_get_rpc_reply(conn);
  int missing_code = 0;
  if (missing.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      missing.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
    missing_code = ((amqp_channel_close_t *)missing.reply.decoded)->reply_code;
    amqp_channel_close_ok_t close_ok;
    amqp_send_method(conn, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
  }
  check(amqp_connection_close(conn, AMQP_REPLY_SUCCESS), "connection.close");
  amqp_destroy_connection(conn);
  printf("{\"confirmed\": %d, \"body\": \"%s\", \"lang\": \"%s\", \"delivery_mode\": %d,"
         " \"missing_code\": %d}\n", confirmed, body, lang, mode, missing_code);
  return 0;
}
