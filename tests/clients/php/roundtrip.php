<?php
// PHP's php-amqplib (Debian's php-amqplib) against WarrenMQ.
//
// Usage: php roundtrip.php HOST PORT
// Publisher confirms (ack handler), headers as an AMQPTable, basic.qos 1, a consumer
// that nacks one delivery with requeue (it comes back redelivered) and acks the rest;
// the failure path: a passive declare of a missing queue throws
// AMQPProtocolChannelException with 404. Prints one JSON line.
require_once '/usr/share/php/PhpAmqpLib/autoload.php';

use PhpAmqpLib\Connection\AMQPStreamConnection;
use PhpAmqpLib\Exception\AMQPProtocolChannelException;
use PhpAmqpLib\Message\AMQPMessage;
use PhpAmqpLib\Wire\AMQPTable;

$conn = new AMQPStreamConnection($argv[1], (int)$argv[2], 'guest', 'guest');
$ch = $conn->channel();
$confirmed = 0;
$ch->set_ack_handler(function (AMQPMessage $m) use (&$confirmed) { $confirmed++; });
$ch->confirm_select();
$ch->queue_declare('php.work', false, true, false, false);
for ($i = 0; $i < 4; $i++) {
    $msg = new AMQPMessage(json_encode(['i' => $i]), [
        'content_type' => 'application/json',
        'delivery_mode' => AMQPMessage::DELIVERY_MODE_PERSISTENT,
        'application_headers' => new AMQPTable(['n' => $i, 'lang' => 'php']),
    ]);
    $ch->basic_publish($msg, '', 'php.work');
}
$ch->wait_for_pending_acks(10);

$ch->basic_qos(0, 1, false);
$seen = [];
$nacked = false;
$ch->basic_consume('php.work', 'php-consumer', false, false, false, false,
    function (AMQPMessage $m) use (&$seen, &$nacked) {
        $i = json_decode($m->getBody(), true)['i'];
        if ($i === 1 && !$nacked) {
            $nacked = true;
            $m->nack(true);
            return;
        }
        $headers = $m->get('application_headers')->getNativeData();
        $seen[] = ['i' => $i, 'redelivered' => (bool)$m->isRedelivered(),
                   'n' => $headers['n'], 'lang' => $headers['lang']];
        $m->ack();
    });
while (count($seen) < 4) {
    $ch->wait(null, false, 10);
}
$ch->basic_cancel('php-consumer');

$missing = null;
$other = $conn->channel();
try {
    $other->queue_declare('php.missing', true);
} catch (AMQPProtocolChannelException $e) {
    $missing = $e->getCode();
}
$ch->close();
$conn->close();
echo json_encode(['confirmed' => $confirmed, 'seen' => $seen, 'missing' => $missing]), "\n";
