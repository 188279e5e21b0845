// A single-data-rate SDRAM chip for simulation: 4 banks x 8192 rows x 512 columns x 16 bits
// (32 MB, the ULX3S's chips as the controller addresses them), burst length 1, and a checker
// of the datasheet timings (squeezefpga/sdram.py gives the values, in clock cycles here).
//
// Every command is checked against the ones before it: tRCD, tRP, tRAS, tRC, tWR, tRFC,
// tMRD, the CAS latency programmed in the mode register, the power-up sequence, commands to
// open or closed banks, bus contention on DQ, and refresh (8192 AUTO REFRESH per
// REFRESH_LIMIT cycles, at most 8 postponed). A violation prints one line naming the
// parameter, the cycle and the bank, then stops the simulation ($fatal).
//
// Planted faults, for the self-test's tests (inputs, so one build serves every fault):
// fault_stuck_bit < 16 holds that data bit at fault_stuck_value; fault_dead_line < 13 reads
// that address line as 0 (rows and columns). Tie them to 31 and 15 for a good chip.
// Written for this project (no vendor model); plain Verilog-2005 plus $fatal.
module sdram_chip #(
    parameter T_RCD = 2, T_RP = 2, T_RAS = 4, T_RC = 5, T_WR = 2, T_RFC = 5, T_MRD = 3,
    parameter CL = 3,
    parameter REFRESH_LIMIT = 4800000,
    parameter POWER_UP = 15000,
    parameter INIT_REFRESHES = 8
) (
    input  wire        clk,
    input  wire        cke,
    input  wire        cs_n,
    input  wire        ras_n,
    input  wire        cas_n,
    input  wire        we_n,
    input  wire [1:0]  ba,
    input  wire [12:0] a,
    input  wire [1:0]  dqm,
    input  wire [15:0] dq_in,      // what the controller drives
    input  wire        dq_in_oe,
    output reg  [15:0] dq_out,     // what the chip drives
    output reg         dq_out_oe,
    input  wire [4:0]  fault_stuck_bit,
    input  wire        fault_stuck_value,
    input  wire [3:0]  fault_dead_line
);
    localparam [2:0] C_NOP = 3'b111, C_ACT = 3'b011, C_READ = 3'b101, C_WRITE = 3'b100,
                     C_PRE = 3'b010, C_REF = 3'b001, C_MRS = 3'b000;
    localparam INIT_POWER = 0, INIT_PRECHARGE = 1, INIT_REFRESH = 2, INIT_MODE = 3,
               INIT_DONE = 4;
    // A refresh is owed every REFRESH_LIMIT / 8192 cycles; 8 may be postponed.
    localparam REFRESH_EVERY = REFRESH_LIMIT / 8192;
    localparam NEVER = -1000000;

    reg [15:0] mem [0:(1 << 24) - 1];
    reg        open [0:3];
    reg [12:0] row [0:3];
    integer    last_act [0:3];
    integer    last_pre [0:3];
    integer    last_write [0:3];
    integer    last_ref, last_mrs, cycle, init_state, init_refreshes, debt, debt_clock;
    integer    b;
    reg [15:0] read_data [0:7];
    reg        read_valid [0:7];

    wire [2:0]  command = {ras_n, cas_n, we_n};
    wire [12:0] address = fault_dead_line < 13 ? a & ~(13'd1 << fault_dead_line) : a;
    wire [15:0] stuck_mask = fault_stuck_bit < 16 ? 16'd1 << fault_stuck_bit[3:0] : 16'd0;
    wire [23:0] location = {ba, row[ba], address[8:0]};
    wire [15:0] written = (dq_in & ~stuck_mask) | (fault_stuck_value ? stuck_mask : 16'd0);

    initial begin
        for (b = 0; b < 4; b = b + 1) begin
            open[b] = 0; row[b] = 0;
            last_act[b] = NEVER; last_pre[b] = NEVER; last_write[b] = NEVER;
        end
        for (b = 0; b < 8; b = b + 1) begin read_valid[b] = 0; read_data[b] = 0; end
        last_ref = NEVER; last_mrs = NEVER; cycle = 0;
        init_state = INIT_POWER; init_refreshes = 0; debt = 0; debt_clock = 0;
        dq_out = 0; dq_out_oe = 0;
    end

    task violation(input [8*40-1:0] what, input integer bank, input integer elapsed,
                   input integer needed);
        begin
            $display("SDRAM timing violation: %0s at cycle %0d, bank %0d (%0d cycles, needs %0d)",
                     what, cycle, bank, elapsed, needed);
            $fatal(1, "the SDRAM model stopped the simulation");
        end
    endtask

    task fault(input [8*60-1:0] what, input integer bank);
        begin
            $display("SDRAM protocol violation: %0s at cycle %0d, bank %0d", what, cycle, bank);
            $fatal(1, "the SDRAM model stopped the simulation");
        end
    endtask

    task need(input [8*40-1:0] what, input integer bank, input integer since,
              input integer cycles);
        begin
            if (cycle - since < cycles) violation(what, bank, cycle - since, cycles);
        end
    endtask

    function [15:0] stuck(input [15:0] value);
        begin
            stuck = (value & ~stuck_mask) | (fault_stuck_value ? stuck_mask : 16'd0);
        end
    endfunction

    always @(posedge clk) begin
        cycle <= cycle + 1;
        // Read data: CL edges after READ, driven during the cycle before it is sampled.
        for (b = 7; b > 0; b = b - 1) begin
            read_valid[b] <= read_valid[b - 1];
            read_data[b] <= read_data[b - 1];
        end
        read_valid[0] <= 0;
        dq_out_oe <= read_valid[CL - 2];
        dq_out <= read_data[CL - 2];
        if (dq_out_oe && dq_in_oe)
            fault("DQ driven by the chip and the controller at once", 0);
        if (init_state == INIT_DONE) begin
            debt_clock <= debt_clock + 1;
            if (debt_clock + 1 >= REFRESH_EVERY) begin
                debt_clock <= 0;
                debt <= debt + 1;
                if (debt + 1 > 8) violation("refresh (8192 rows per 64 ms)", 0, debt + 1, 8);
            end
        end
        if (!cke) fault("CKE low (power-down is not modelled)", 0);
        if (init_state == INIT_POWER && cycle + 1 >= POWER_UP) init_state <= INIT_PRECHARGE;
        if (!cs_n && command != C_NOP) begin
            if (init_state == INIT_POWER) violation("power-up wait", ba, cycle, POWER_UP);
            need("tMRD", ba, last_mrs, T_MRD);
            need("tRFC", ba, last_ref, T_RFC);
            case (command)
            C_ACT: begin
                if (init_state != INIT_DONE) fault("ACTIVATE before initialisation", ba);
                if (open[ba]) fault("ACTIVATE to a bank with an open row", ba);
                need("tRP", ba, last_pre[ba], T_RP);
                need("tRC", ba, last_act[ba], T_RC);
                open[ba] <= 1;
                row[ba] <= address;
                last_act[ba] <= cycle;
            end
            C_READ, C_WRITE: begin
                if (init_state != INIT_DONE) fault("READ/WRITE before initialisation", ba);
                if (!open[ba]) fault("READ/WRITE to a bank without an open row", ba);
                if (address[10]) fault("auto-precharge is not modelled", ba);
                need("tRCD", ba, last_act[ba], T_RCD);
                if (command == C_READ) begin
                    read_valid[0] <= 1;
                    read_data[0] <= stuck(mem[location]);
                end else begin
                    if (!dq_in_oe) fault("WRITE without data on DQ", ba);
                    if (!dqm[0]) mem[location][7:0] <= written[7:0];
                    if (!dqm[1]) mem[location][15:8] <= written[15:8];
                    last_write[ba] <= cycle;
                end
            end
            C_PRE: begin
                for (b = 0; b < 4; b = b + 1)
                    if ((address[10] || b == ba) && open[b]) begin
                        need("tRAS", b, last_act[b], T_RAS);
                        need("tWR", b, last_write[b], T_WR);
                        open[b] <= 0;
                        last_pre[b] <= cycle;
                    end
                if (init_state == INIT_PRECHARGE) begin
                    if (!address[10]) fault("power-up: PRECHARGE ALL expected", ba);
                    init_state <= INIT_REFRESH;
                end
            end
            C_REF: begin
                for (b = 0; b < 4; b = b + 1) begin
                    if (open[b]) fault("AUTO REFRESH with a bank open", b);
                    need("tRP", b, last_pre[b], T_RP);
                    need("tRC", b, last_act[b], T_RC);
                end
                last_ref <= cycle;
                if (init_state == INIT_REFRESH) begin
                    init_refreshes <= init_refreshes + 1;
                    if (init_refreshes + 1 == INIT_REFRESHES) init_state <= INIT_MODE;
                end else if (init_state == INIT_DONE) begin
                    // Refreshing more often than needed is harmless: at most 8 are credited
                    // ahead (they may then be postponed again).
                    if ((debt_clock + 1 >= REFRESH_EVERY ? debt + 1 : debt) - 1 >= -8)
                        debt <= (debt_clock + 1 >= REFRESH_EVERY ? debt + 1 : debt) - 1;
                    else
                        debt <= -8;
                end else
                    fault("AUTO REFRESH before PRECHARGE ALL in the power-up sequence", 0);
            end
            C_MRS: begin
                for (b = 0; b < 4; b = b + 1)
                    if (open[b]) fault("LOAD MODE REGISTER with a bank open", b);
                if (init_state == INIT_POWER || init_state == INIT_PRECHARGE ||
                        init_state == INIT_REFRESH)
                    fault("LOAD MODE REGISTER before the power-up refreshes", 0);
                if (address[6:4] != CL) fault("mode register: CAS latency differs", 0);
                if (address[2:0] != 3'd0 || address[3]) fault("mode register: burst length 1, sequential", 0);
                last_mrs <= cycle;
                if (init_state == INIT_MODE) begin
                    init_state <= INIT_DONE;
                    debt <= 0;
                    debt_clock <= 0;
                end
            end
            default: fault("BURST TERMINATE is not modelled", ba);
            endcase
        end
    end
endmodule
