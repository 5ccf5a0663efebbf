// A four-state smoke test of the generated 2-port fabric, for simulators that start every
// register at X (iverilog here; most commercial simulators too), where Verilator's
// two-state models start at 0 and hide a register that nothing ever sets.
//
// Reset, both links up, then port 0 broadcasts PAYLOADS messages with payloads 0, 1, ...
// Port 1 must hear its own MemberUp, then exactly those broadcasts in order, from port 0,
// with increasing sequence numbers; no output may be X or Z after reset. Ends with PASS,
// or $fatal naming what went wrong. Run by scripts/test-hdl.
`timescale 1ns/1ps
module broadcast_fabric_2_tb;
    localparam PAYLOADS = 12;
    localparam KIND_BROADCAST = 8'd1;
    localparam KIND_MEMBER_UP = 8'd6;

    reg clock = 1'b0;
    reg reset = 1'b1;
    reg link_up = 1'b0;
    reg tx_valid = 1'b0;
    reg [63:0] tx_payload = 64'd0;
    wire tx_ready_0, tx_ready_1, rx_valid_0, rx_valid_1, sram_write_0, sram_write_1;
    wire [7:0] rx_kind_0, rx_kind_1, rx_source_0, rx_source_1;
    wire [63:0] rx_sequence_0, rx_sequence_1, rx_payload_0, rx_payload_1;
    wire [63:0] sram_data_0, sram_data_1;
    wire [31:0] sram_offset_0, sram_offset_1, membership;

    broadcast_fabric_2 uut(
        .clock(clock), .reset(reset),
        .ports_0_link_up(link_up), .ports_0_tx_valid(tx_valid), .ports_0_tx_ready(tx_ready_0),
        .ports_0_tx_kind(KIND_BROADCAST), .ports_0_tx_target(8'hff),
        .ports_0_tx_payload(tx_payload), .ports_0_tx_sram_offset(32'd0),
        .ports_0_rx_valid(rx_valid_0), .ports_0_rx_ready(1'b1), .ports_0_rx_kind(rx_kind_0),
        .ports_0_rx_source(rx_source_0), .ports_0_rx_sequence(rx_sequence_0),
        .ports_0_rx_payload(rx_payload_0), .ports_0_sram_write(sram_write_0),
        .ports_0_sram_offset(sram_offset_0), .ports_0_sram_data(sram_data_0),
        .ports_1_link_up(link_up), .ports_1_tx_valid(1'b0), .ports_1_tx_ready(tx_ready_1),
        .ports_1_tx_kind(8'd0), .ports_1_tx_target(8'd0), .ports_1_tx_payload(64'd0),
        .ports_1_tx_sram_offset(32'd0),
        .ports_1_rx_valid(rx_valid_1), .ports_1_rx_ready(1'b1), .ports_1_rx_kind(rx_kind_1),
        .ports_1_rx_source(rx_source_1), .ports_1_rx_sequence(rx_sequence_1),
        .ports_1_rx_payload(rx_payload_1), .ports_1_sram_write(sram_write_1),
        .ports_1_sram_offset(sram_offset_1), .ports_1_sram_data(sram_data_1),
        .membership(membership));

    always #5 clock = ~clock;

    integer sent = 0;
    integer heard = 0;
    reg joined = 1'b0;
    reg [63:0] last_sequence = 64'd0;

    // Sampled at the edge, before it changes anything: what the fabric and the ports see.
    always @(posedge clock) if (!reset) begin
        if (^{tx_ready_0, tx_ready_1, rx_valid_0, rx_valid_1, sram_write_0, sram_write_1,
              membership} === 1'bx)
            $fatal(1, "a control output is X or Z after reset");
        if (rx_valid_1) begin
            if (^{rx_kind_1, rx_source_1, rx_sequence_1, rx_payload_1} === 1'bx)
                $fatal(1, "port 1 was offered a message with X or Z in it");
            if (!joined) begin
                if (rx_kind_1 != KIND_MEMBER_UP || rx_source_1 != 8'd1)
                    $fatal(1, "port 1 first heard kind %0d from %0d, not its own MemberUp",
                           rx_kind_1, rx_source_1);
                joined = 1'b1;
            end else begin
                if (rx_kind_1 != KIND_BROADCAST || rx_source_1 != 8'd0
                        || rx_payload_1 != heard)
                    $fatal(1, "port 1 heard kind %0d from %0d payload %0d, expected broadcast %0d",
                           rx_kind_1, rx_source_1, rx_payload_1, heard);
                if (rx_sequence_1 <= last_sequence)
                    $fatal(1, "sequence %0d after %0d", rx_sequence_1, last_sequence);
                heard = heard + 1;
            end
            last_sequence = rx_sequence_1;
        end
        if (tx_valid && tx_ready_0) begin
            sent = sent + 1;
            tx_payload <= tx_payload + 64'd1;
            if (sent == PAYLOADS) tx_valid <= 1'b0;
        end
    end

    initial begin
        repeat (3) @(negedge clock);
        reset = 1'b0;
        link_up = 1'b1;
        wait (membership[1:0] == 2'b11);
        @(negedge clock);
        tx_valid <= 1'b1;
        repeat (200) @(negedge clock);
        if (sent != PAYLOADS || heard != PAYLOADS)
            $fatal(1, "sent %0d, port 1 heard %0d of %0d", sent, heard, PAYLOADS);
        $display("PASS: %0d broadcasts delivered in order, no X after reset", heard);
        $finish;
    end
endmodule
