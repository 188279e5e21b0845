// Behavioural models of the two ECP5 primitives that yosys's simulation library
// (share/lattice/cells_sim_ecp5.v) declares only as blackboxes: the DP16KD block RAM and the
// MULT18X18D multiplier. Written for squeezefpga's post-synthesis simulation
// (sim/post_synthesis.py) from the Lattice ECP5 primitive descriptions and the way yosys's
// synth_ecp5 uses them (brams_16kd.txt, brams_map_16kd.v, dsp_map_18x18.v). Verilog-2001
// plus SystemVerilog's $fatal and macro stringification; no warnings in Verilator 5 -Wall.
//
// Every parameter value a model does not implement stops the simulation at its start with
// $fatal naming the instance, the parameter and its value; the few pin uses it does not
// implement stop it when they happen.
//
// DP16KD: 18,432 bits (1,024 rows of 18 bits, INITVAL_00..3F holding 16 rows each in 20-bit
// slots). Per port: DATA_WIDTH 1, 2, 4, 9, 18 (16K x 1 ... 1K x 18), and 36 as the
// pseudo-dual-port block (port A writes 512 x 36 from DIA/DIB with the byte enables on
// ADA3..0, port B reads at any width; a 36-bit read comes out on DOA = bits 17..0 and DOB =
// bits 35..18, a narrower one on DOB). Word a of width w sits in row a >> (14 - log2 depth):
// 1-, 2- and 4-bit words pack the 16 data bits of a row, skipping bits 8 and 17 (the 9th bits
// of its bytes); 9-bit words are its halves; 18-bit writes take the byte enables on ADx1..0.
// Ports: CE and the chip select (CS2..0 == CSDECODE) gate reads and writes; WRITEMODE NORMAL
// keeps the output during a write, WRITETHROUGH shows the new word, READBEFOREWRITE the old
// one; REGMODE NOREG or OUTREG (one more register, enabled by OCE); RST clears the outputs:
// RESETMODE SYNC at the clock edge, ungated by CE and blocking that edge's write (as yosys's
// brams_16kd.txt describes the block), ASYNC at once, writes going on (ASYNC_RESET_RELEASE
// SYNC and ASYNC simulate alike). Outputs start at 0. CLKxMUX "INV" clocks a port on the
// falling edge. The ports share a clock (or one has its inverse, or one port is unclocked);
// two independent clocks stop the simulation. What the block leaves undefined is not given
// a convenient value: when both ports act on one clock edge, a read of bits the other port
// writes returns pseudo-random bits, and bits both ports write take pseudo-random values
// (with a message), so a netlist that relies on either fails its comparison instead of
// passing by luck. GSR is not modelled (no global set/reset happens in these simulations).
//
// MULT18X18D: the combinational 18 x 18 -> 36 multiplier: P = A * B, each operand signed
// when its SIGNEDA / SIGNEDB pin is high. The pipeline registers (REG_*_CLK other than
// "NONE"), the shift-register cascade (SOURCEA/SOURCEB high), MULT_BYPASS and the high-speed
// modes are rejected: yosys's ECP5 flow leaves them unused.

// Primitives have pins and parameters a design leaves unused, and string parameters compare
// with constants of other lengths.
/* verilator lint_off UNUSEDSIGNAL */
/* verilator lint_off UNUSEDPARAM */
/* verilator lint_off WIDTHEXPAND */

`define SQZ_ECP5_FAIL(cell, name, value) \
    $fatal(1, "%s %m: %s = \"%0s\" is not modelled by squeezefpga's sim/ecp5_cells.v", \
           cell, name, value)
`define SQZ_ECP5_PIN(name, pin) \
    if (name != pin) `SQZ_ECP5_FAIL("DP16KD", `"name`", name);
`define SQZ_ECP5_MULT(ok, name) \
    if (!(ok)) `SQZ_ECP5_FAIL("MULT18X18D", `"name`", name);

module DP16KD (
    input  DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5,
           DIA4, DIA3, DIA2, DIA1, DIA0,
    input  ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1,
           ADA0,
    input  CEA, OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0,
    output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5,
           DOA4, DOA3, DOA2, DOA1, DOA0,
    input  DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5,
           DIB4, DIB3, DIB2, DIB1, DIB0,
    input  ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1,
           ADB0,
    input  CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0,
    output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5,
           DOB4, DOB3, DOB2, DOB1, DOB0
);
    parameter DATA_WIDTH_A = 18;
    parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter DIA17MUX = "DIA17", DIA16MUX = "DIA16", DIA15MUX = "DIA15", DIA14MUX = "DIA14";
    parameter DIA13MUX = "DIA13", DIA12MUX = "DIA12", DIA11MUX = "DIA11", DIA10MUX = "DIA10";
    parameter DIA9MUX = "DIA9", DIA8MUX = "DIA8", DIA7MUX = "DIA7", DIA6MUX = "DIA6";
    parameter DIA5MUX = "DIA5", DIA4MUX = "DIA4", DIA3MUX = "DIA3", DIA2MUX = "DIA2";
    parameter DIA1MUX = "DIA1", DIA0MUX = "DIA0", ADA13MUX = "ADA13", ADA12MUX = "ADA12";
    parameter ADA11MUX = "ADA11", ADA10MUX = "ADA10", ADA9MUX = "ADA9", ADA8MUX = "ADA8";
    parameter ADA7MUX = "ADA7", ADA6MUX = "ADA6", ADA5MUX = "ADA5", ADA4MUX = "ADA4";
    parameter ADA3MUX = "ADA3", ADA2MUX = "ADA2", ADA1MUX = "ADA1", ADA0MUX = "ADA0";
    parameter CEAMUX = "CEA", OCEAMUX = "OCEA", CLKAMUX = "CLKA", WEAMUX = "WEA";
    parameter RSTAMUX = "RSTA", CSA2MUX = "CSA2", CSA1MUX = "CSA1", CSA0MUX = "CSA0";
    parameter DOA17MUX = "DOA17", DOA16MUX = "DOA16", DOA15MUX = "DOA15", DOA14MUX = "DOA14";
    parameter DOA13MUX = "DOA13", DOA12MUX = "DOA12", DOA11MUX = "DOA11", DOA10MUX = "DOA10";
    parameter DOA9MUX = "DOA9", DOA8MUX = "DOA8", DOA7MUX = "DOA7", DOA6MUX = "DOA6";
    parameter DOA5MUX = "DOA5", DOA4MUX = "DOA4", DOA3MUX = "DOA3", DOA2MUX = "DOA2";
    parameter DOA1MUX = "DOA1", DOA0MUX = "DOA0", DIB17MUX = "DIB17", DIB16MUX = "DIB16";
    parameter DIB15MUX = "DIB15", DIB14MUX = "DIB14", DIB13MUX = "DIB13", DIB12MUX = "DIB12";
    parameter DIB11MUX = "DIB11", DIB10MUX = "DIB10", DIB9MUX = "DIB9", DIB8MUX = "DIB8";
    parameter DIB7MUX = "DIB7", DIB6MUX = "DIB6", DIB5MUX = "DIB5", DIB4MUX = "DIB4";
    parameter DIB3MUX = "DIB3", DIB2MUX = "DIB2", DIB1MUX = "DIB1", DIB0MUX = "DIB0";
    parameter ADB13MUX = "ADB13", ADB12MUX = "ADB12", ADB11MUX = "ADB11", ADB10MUX = "ADB10";
    parameter ADB9MUX = "ADB9", ADB8MUX = "ADB8", ADB7MUX = "ADB7", ADB6MUX = "ADB6";
    parameter ADB5MUX = "ADB5", ADB4MUX = "ADB4", ADB3MUX = "ADB3", ADB2MUX = "ADB2";
    parameter ADB1MUX = "ADB1", ADB0MUX = "ADB0", CEBMUX = "CEB", OCEBMUX = "OCEB";
    parameter CLKBMUX = "CLKB", WEBMUX = "WEB", RSTBMUX = "RSTB", CSB2MUX = "CSB2";
    parameter CSB1MUX = "CSB1", CSB0MUX = "CSB0", DOB17MUX = "DOB17", DOB16MUX = "DOB16";
    parameter DOB15MUX = "DOB15", DOB14MUX = "DOB14", DOB13MUX = "DOB13", DOB12MUX = "DOB12";
    parameter DOB11MUX = "DOB11", DOB10MUX = "DOB10", DOB9MUX = "DOB9", DOB8MUX = "DOB8";
    parameter DOB7MUX = "DOB7", DOB6MUX = "DOB6", DOB5MUX = "DOB5", DOB4MUX = "DOB4";
    parameter DOB3MUX = "DOB3", DOB2MUX = "DOB2", DOB1MUX = "DOB1", DOB0MUX = "DOB0";
    parameter WID = 0;
    parameter GSR = "ENABLED";
    parameter INIT_DATA = "STATIC";
    parameter [319:0] INITVAL_00 = 320'h0, INITVAL_01 = 320'h0, INITVAL_02 = 320'h0;
    parameter [319:0] INITVAL_03 = 320'h0, INITVAL_04 = 320'h0, INITVAL_05 = 320'h0;
    parameter [319:0] INITVAL_06 = 320'h0, INITVAL_07 = 320'h0, INITVAL_08 = 320'h0;
    parameter [319:0] INITVAL_09 = 320'h0, INITVAL_0A = 320'h0, INITVAL_0B = 320'h0;
    parameter [319:0] INITVAL_0C = 320'h0, INITVAL_0D = 320'h0, INITVAL_0E = 320'h0;
    parameter [319:0] INITVAL_0F = 320'h0, INITVAL_10 = 320'h0, INITVAL_11 = 320'h0;
    parameter [319:0] INITVAL_12 = 320'h0, INITVAL_13 = 320'h0, INITVAL_14 = 320'h0;
    parameter [319:0] INITVAL_15 = 320'h0, INITVAL_16 = 320'h0, INITVAL_17 = 320'h0;
    parameter [319:0] INITVAL_18 = 320'h0, INITVAL_19 = 320'h0, INITVAL_1A = 320'h0;
    parameter [319:0] INITVAL_1B = 320'h0, INITVAL_1C = 320'h0, INITVAL_1D = 320'h0;
    parameter [319:0] INITVAL_1E = 320'h0, INITVAL_1F = 320'h0, INITVAL_20 = 320'h0;
    parameter [319:0] INITVAL_21 = 320'h0, INITVAL_22 = 320'h0, INITVAL_23 = 320'h0;
    parameter [319:0] INITVAL_24 = 320'h0, INITVAL_25 = 320'h0, INITVAL_26 = 320'h0;
    parameter [319:0] INITVAL_27 = 320'h0, INITVAL_28 = 320'h0, INITVAL_29 = 320'h0;
    parameter [319:0] INITVAL_2A = 320'h0, INITVAL_2B = 320'h0, INITVAL_2C = 320'h0;
    parameter [319:0] INITVAL_2D = 320'h0, INITVAL_2E = 320'h0, INITVAL_2F = 320'h0;
    parameter [319:0] INITVAL_30 = 320'h0, INITVAL_31 = 320'h0, INITVAL_32 = 320'h0;
    parameter [319:0] INITVAL_33 = 320'h0, INITVAL_34 = 320'h0, INITVAL_35 = 320'h0;
    parameter [319:0] INITVAL_36 = 320'h0, INITVAL_37 = 320'h0, INITVAL_38 = 320'h0;
    parameter [319:0] INITVAL_39 = 320'h0, INITVAL_3A = 320'h0, INITVAL_3B = 320'h0;
    parameter [319:0] INITVAL_3C = 320'h0, INITVAL_3D = 320'h0, INITVAL_3E = 320'h0;
    parameter [319:0] INITVAL_3F = 320'h0;

    localparam [20479:0] INIT = {
        INITVAL_3F, INITVAL_3E, INITVAL_3D, INITVAL_3C, INITVAL_3B, INITVAL_3A, INITVAL_39,
        INITVAL_38, INITVAL_37, INITVAL_36, INITVAL_35, INITVAL_34, INITVAL_33, INITVAL_32,
        INITVAL_31, INITVAL_30, INITVAL_2F, INITVAL_2E, INITVAL_2D, INITVAL_2C, INITVAL_2B,
        INITVAL_2A, INITVAL_29, INITVAL_28, INITVAL_27, INITVAL_26, INITVAL_25, INITVAL_24,
        INITVAL_23, INITVAL_22, INITVAL_21, INITVAL_20, INITVAL_1F, INITVAL_1E, INITVAL_1D,
        INITVAL_1C, INITVAL_1B, INITVAL_1A, INITVAL_19, INITVAL_18, INITVAL_17, INITVAL_16,
        INITVAL_15, INITVAL_14, INITVAL_13, INITVAL_12, INITVAL_11, INITVAL_10, INITVAL_0F,
        INITVAL_0E, INITVAL_0D, INITVAL_0C, INITVAL_0B, INITVAL_0A, INITVAL_09, INITVAL_08,
        INITVAL_07, INITVAL_06, INITVAL_05, INITVAL_04, INITVAL_03, INITVAL_02, INITVAL_01,
        INITVAL_00
    };

    // {valid, CS2, CS1, CS0} of a CSDECODE string "0bXYZ".
    function automatic [3:0] cs_code(input [39:0] text);
        reg valid;
        integer i;
        begin
            valid = text[39:24] == "0b";
            for (i = 0; i < 3; i = i + 1)
                valid = valid && (text[i * 8 +: 8] == "0" || text[i * 8 +: 8] == "1");
            cs_code = {valid, text[16], text[8], text[0]};
        end
    endfunction

    // Offset in its row of a word of width 1, 2, 4 or 9 at address addr (0 for 18 and 36).
    function automatic [4:0] offset(input integer width, input [13:0] addr);
        case (width)
            1: offset = {1'b0, addr[3:0]} + {4'd0, addr[3]};
            2: offset = {1'b0, addr[3:1], 1'b0} + {4'd0, addr[3]};
            4: offset = {1'b0, addr[3:2], 2'b0} + {4'd0, addr[3]};
            9: offset = addr[3] ? 5'd9 : 5'd0;
            default: offset = 5'd0;
        endcase
    endfunction

    // The low min(width, 18) bits set.
    function automatic [17:0] ones(input integer width);
        ones = width >= 18 ? 18'h3ffff : (18'h1 << width) - 18'h1;
    endfunction

    function automatic [17:0] merge(input [17:0] word, input [17:0] mask, input [17:0] data);
        merge = (word & ~mask) | (data & mask);
    endfunction

    localparam PDP = DATA_WIDTH_A == 36;        // pseudo dual port: A writes, B reads
    localparam WIDE_B = DATA_WIDTH_B == 36;
    localparam ASYNC = RESETMODE == "ASYNC";
    localparam [3:0] CS_A = cs_code(CSDECODE_A);
    localparam [3:0] CS_B = cs_code(CSDECODE_B);

    function automatic width_ok(input integer width);
        width_ok = width == 1 || width == 2 || width == 4 || width == 9 || width == 18
                   || width == 36;
    endfunction

    initial begin
        if (!width_ok(DATA_WIDTH_A))
            $fatal(1, "DP16KD %m: DATA_WIDTH_A = %0d is not modelled", DATA_WIDTH_A);
        if (!width_ok(DATA_WIDTH_B))
            $fatal(1, "DP16KD %m: DATA_WIDTH_B = %0d is not modelled", DATA_WIDTH_B);
        if (WIDE_B && !PDP)
            $fatal(1, "DP16KD %m: DATA_WIDTH_B = 36 needs DATA_WIDTH_A = 36, not %0d",
                   DATA_WIDTH_A);
        if (REGMODE_A != "NOREG" && REGMODE_A != "OUTREG")
            `SQZ_ECP5_FAIL("DP16KD", "REGMODE_A", REGMODE_A);
        if (REGMODE_B != "NOREG" && REGMODE_B != "OUTREG")
            `SQZ_ECP5_FAIL("DP16KD", "REGMODE_B", REGMODE_B);
        if (WRITEMODE_A != "NORMAL" && WRITEMODE_A != "WRITETHROUGH"
                && WRITEMODE_A != "READBEFOREWRITE")
            `SQZ_ECP5_FAIL("DP16KD", "WRITEMODE_A", WRITEMODE_A);
        if (WRITEMODE_B != "NORMAL" && WRITEMODE_B != "WRITETHROUGH"
                && WRITEMODE_B != "READBEFOREWRITE")
            `SQZ_ECP5_FAIL("DP16KD", "WRITEMODE_B", WRITEMODE_B);
        if (RESETMODE != "SYNC" && RESETMODE != "ASYNC")
            `SQZ_ECP5_FAIL("DP16KD", "RESETMODE", RESETMODE);
        if (ASYNC_RESET_RELEASE != "SYNC" && ASYNC_RESET_RELEASE != "ASYNC")
            `SQZ_ECP5_FAIL("DP16KD", "ASYNC_RESET_RELEASE", ASYNC_RESET_RELEASE);
        if (!CS_A[3])
            `SQZ_ECP5_FAIL("DP16KD", "CSDECODE_A", CSDECODE_A);
        if (!CS_B[3])
            `SQZ_ECP5_FAIL("DP16KD", "CSDECODE_B", CSDECODE_B);
        if (GSR != "ENABLED" && GSR != "DISABLED" && GSR != "AUTO")
            `SQZ_ECP5_FAIL("DP16KD", "GSR", GSR);
        if (INIT_DATA != "STATIC")
            `SQZ_ECP5_FAIL("DP16KD", "INIT_DATA", INIT_DATA);
        if (CLKAMUX != "CLKA" && CLKAMUX != "INV")
            `SQZ_ECP5_FAIL("DP16KD", "CLKAMUX", CLKAMUX);
        if (CLKBMUX != "CLKB" && CLKBMUX != "INV")
            `SQZ_ECP5_FAIL("DP16KD", "CLKBMUX", CLKBMUX);
        `SQZ_ECP5_PIN(DIA17MUX, "DIA17")
        `SQZ_ECP5_PIN(DIA16MUX, "DIA16")
        `SQZ_ECP5_PIN(DIA15MUX, "DIA15")
        `SQZ_ECP5_PIN(DIA14MUX, "DIA14")
        `SQZ_ECP5_PIN(DIA13MUX, "DIA13")
        `SQZ_ECP5_PIN(DIA12MUX, "DIA12")
        `SQZ_ECP5_PIN(DIA11MUX, "DIA11")
        `SQZ_ECP5_PIN(DIA10MUX, "DIA10")
        `SQZ_ECP5_PIN(DIA9MUX, "DIA9")
        `SQZ_ECP5_PIN(DIA8MUX, "DIA8")
        `SQZ_ECP5_PIN(DIA7MUX, "DIA7")
        `SQZ_ECP5_PIN(DIA6MUX, "DIA6")
        `SQZ_ECP5_PIN(DIA5MUX, "DIA5")
        `SQZ_ECP5_PIN(DIA4MUX, "DIA4")
        `SQZ_ECP5_PIN(DIA3MUX, "DIA3")
        `SQZ_ECP5_PIN(DIA2MUX, "DIA2")
        `SQZ_ECP5_PIN(DIA1MUX, "DIA1")
        `SQZ_ECP5_PIN(DIA0MUX, "DIA0")
        `SQZ_ECP5_PIN(ADA13MUX, "ADA13")
        `SQZ_ECP5_PIN(ADA12MUX, "ADA12")
        `SQZ_ECP5_PIN(ADA11MUX, "ADA11")
        `SQZ_ECP5_PIN(ADA10MUX, "ADA10")
        `SQZ_ECP5_PIN(ADA9MUX, "ADA9")
        `SQZ_ECP5_PIN(ADA8MUX, "ADA8")
        `SQZ_ECP5_PIN(ADA7MUX, "ADA7")
        `SQZ_ECP5_PIN(ADA6MUX, "ADA6")
        `SQZ_ECP5_PIN(ADA5MUX, "ADA5")
        `SQZ_ECP5_PIN(ADA4MUX, "ADA4")
        `SQZ_ECP5_PIN(ADA3MUX, "ADA3")
        `SQZ_ECP5_PIN(ADA2MUX, "ADA2")
        `SQZ_ECP5_PIN(ADA1MUX, "ADA1")
        `SQZ_ECP5_PIN(ADA0MUX, "ADA0")
        `SQZ_ECP5_PIN(CEAMUX, "CEA")
        `SQZ_ECP5_PIN(OCEAMUX, "OCEA")
        `SQZ_ECP5_PIN(WEAMUX, "WEA")
        `SQZ_ECP5_PIN(RSTAMUX, "RSTA")
        `SQZ_ECP5_PIN(CSA2MUX, "CSA2")
        `SQZ_ECP5_PIN(CSA1MUX, "CSA1")
        `SQZ_ECP5_PIN(CSA0MUX, "CSA0")
        `SQZ_ECP5_PIN(DOA17MUX, "DOA17")
        `SQZ_ECP5_PIN(DOA16MUX, "DOA16")
        `SQZ_ECP5_PIN(DOA15MUX, "DOA15")
        `SQZ_ECP5_PIN(DOA14MUX, "DOA14")
        `SQZ_ECP5_PIN(DOA13MUX, "DOA13")
        `SQZ_ECP5_PIN(DOA12MUX, "DOA12")
        `SQZ_ECP5_PIN(DOA11MUX, "DOA11")
        `SQZ_ECP5_PIN(DOA10MUX, "DOA10")
        `SQZ_ECP5_PIN(DOA9MUX, "DOA9")
        `SQZ_ECP5_PIN(DOA8MUX, "DOA8")
        `SQZ_ECP5_PIN(DOA7MUX, "DOA7")
        `SQZ_ECP5_PIN(DOA6MUX, "DOA6")
        `SQZ_ECP5_PIN(DOA5MUX, "DOA5")
        `SQZ_ECP5_PIN(DOA4MUX, "DOA4")
        `SQZ_ECP5_PIN(DOA3MUX, "DOA3")
        `SQZ_ECP5_PIN(DOA2MUX, "DOA2")
        `SQZ_ECP5_PIN(DOA1MUX, "DOA1")
        `SQZ_ECP5_PIN(DOA0MUX, "DOA0")
        `SQZ_ECP5_PIN(DIB17MUX, "DIB17")
        `SQZ_ECP5_PIN(DIB16MUX, "DIB16")
        `SQZ_ECP5_PIN(DIB15MUX, "DIB15")
        `SQZ_ECP5_PIN(DIB14MUX, "DIB14")
        `SQZ_ECP5_PIN(DIB13MUX, "DIB13")
        `SQZ_ECP5_PIN(DIB12MUX, "DIB12")
        `SQZ_ECP5_PIN(DIB11MUX, "DIB11")
        `SQZ_ECP5_PIN(DIB10MUX, "DIB10")
        `SQZ_ECP5_PIN(DIB9MUX, "DIB9")
        `SQZ_ECP5_PIN(DIB8MUX, "DIB8")
        `SQZ_ECP5_PIN(DIB7MUX, "DIB7")
        `SQZ_ECP5_PIN(DIB6MUX, "DIB6")
        `SQZ_ECP5_PIN(DIB5MUX, "DIB5")
        `SQZ_ECP5_PIN(DIB4MUX, "DIB4")
        `SQZ_ECP5_PIN(DIB3MUX, "DIB3")
        `SQZ_ECP5_PIN(DIB2MUX, "DIB2")
        `SQZ_ECP5_PIN(DIB1MUX, "DIB1")
        `SQZ_ECP5_PIN(DIB0MUX, "DIB0")
        `SQZ_ECP5_PIN(ADB13MUX, "ADB13")
        `SQZ_ECP5_PIN(ADB12MUX, "ADB12")
        `SQZ_ECP5_PIN(ADB11MUX, "ADB11")
        `SQZ_ECP5_PIN(ADB10MUX, "ADB10")
        `SQZ_ECP5_PIN(ADB9MUX, "ADB9")
        `SQZ_ECP5_PIN(ADB8MUX, "ADB8")
        `SQZ_ECP5_PIN(ADB7MUX, "ADB7")
        `SQZ_ECP5_PIN(ADB6MUX, "ADB6")
        `SQZ_ECP5_PIN(ADB5MUX, "ADB5")
        `SQZ_ECP5_PIN(ADB4MUX, "ADB4")
        `SQZ_ECP5_PIN(ADB3MUX, "ADB3")
        `SQZ_ECP5_PIN(ADB2MUX, "ADB2")
        `SQZ_ECP5_PIN(ADB1MUX, "ADB1")
        `SQZ_ECP5_PIN(ADB0MUX, "ADB0")
        `SQZ_ECP5_PIN(CEBMUX, "CEB")
        `SQZ_ECP5_PIN(OCEBMUX, "OCEB")
        `SQZ_ECP5_PIN(WEBMUX, "WEB")
        `SQZ_ECP5_PIN(RSTBMUX, "RSTB")
        `SQZ_ECP5_PIN(CSB2MUX, "CSB2")
        `SQZ_ECP5_PIN(CSB1MUX, "CSB1")
        `SQZ_ECP5_PIN(CSB0MUX, "CSB0")
        `SQZ_ECP5_PIN(DOB17MUX, "DOB17")
        `SQZ_ECP5_PIN(DOB16MUX, "DOB16")
        `SQZ_ECP5_PIN(DOB15MUX, "DOB15")
        `SQZ_ECP5_PIN(DOB14MUX, "DOB14")
        `SQZ_ECP5_PIN(DOB13MUX, "DOB13")
        `SQZ_ECP5_PIN(DOB12MUX, "DOB12")
        `SQZ_ECP5_PIN(DOB11MUX, "DOB11")
        `SQZ_ECP5_PIN(DOB10MUX, "DOB10")
        `SQZ_ECP5_PIN(DOB9MUX, "DOB9")
        `SQZ_ECP5_PIN(DOB8MUX, "DOB8")
        `SQZ_ECP5_PIN(DOB7MUX, "DOB7")
        `SQZ_ECP5_PIN(DOB6MUX, "DOB6")
        `SQZ_ECP5_PIN(DOB5MUX, "DOB5")
        `SQZ_ECP5_PIN(DOB4MUX, "DOB4")
        `SQZ_ECP5_PIN(DOB3MUX, "DOB3")
        `SQZ_ECP5_PIN(DOB2MUX, "DOB2")
        `SQZ_ECP5_PIN(DOB1MUX, "DOB1")
        `SQZ_ECP5_PIN(DOB0MUX, "DOB0")
    end

    wire [17:0] dia = {
        DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5,
        DIA4, DIA3, DIA2, DIA1, DIA0
    };
    wire [17:0] dib = {
        DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5,
        DIB4, DIB3, DIB2, DIB1, DIB0
    };
    wire [13:0] ada = {
        ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1,
        ADA0
    };
    wire [13:0] adb = {
        ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1,
        ADB0
    };
    wire clka = CLKAMUX == "INV" ? ~CLKA : CLKA;
    wire clkb = CLKBMUX == "INV" ? ~CLKB : CLKB;
    wire sel_a = CEA && {CSA2, CSA1, CSA0} == CS_A[2:0];
    wire sel_b = CEB && {CSB2, CSB1, CSB0} == CS_B[2:0];
    wire srst_a = !ASYNC && RSTA, srst_b = !ASYNC && RSTB;
    wire arst_a = ASYNC && RSTA, arst_b = ASYNC && RSTB;

    // What each port addresses: its first row (36-bit words take rows 2w and 2w + 1), the
    // offset of a narrow word in it, the bits it writes and their values.
    wire [9:0] row_a = PDP ? {ada[13:5], 1'b0} : ada[13:4];
    wire [9:0] row_b = WIDE_B ? {adb[13:5], 1'b0} : adb[13:4];
    wire [4:0] off_a = offset(DATA_WIDTH_A, ada);
    wire [4:0] off_b = offset(DATA_WIDTH_B, adb);
    wire [17:0] mask_a0 = DATA_WIDTH_A >= 18 ? {{9{ada[1]}}, {9{ada[0]}}}
                                             : ones(DATA_WIDTH_A) << off_a;
    wire [17:0] mask_a1 = PDP ? {{9{ada[3]}}, {9{ada[2]}}} : 18'h0;
    wire [17:0] mask_b = DATA_WIDTH_B >= 18 ? {{9{adb[1]}}, {9{adb[0]}}}
                                            : ones(DATA_WIDTH_B) << off_b;
    wire [17:0] data_a0 = DATA_WIDTH_A >= 18 ? dia : (dia & ones(DATA_WIDTH_A)) << off_a;
    wire [17:0] data_b = DATA_WIDTH_B >= 18 ? dib : (dib & ones(DATA_WIDTH_B)) << off_b;

    reg [17:0] mem [0:1023];
    reg [35:0] latch_a, latch_b;               // the read data
    reg [35:0] oreg_a, oreg_b;                 // REGMODE OUTREG's output registers
    reg alone_a, alone_b;                      // a clock was seen rising while the other is low
    reg pulse_a, pulse_b;                      // toggled by each rise of an asynchronous reset
    reg seen_a, seen_b;                        // pulse_x at port x's last clock edge
    reg [31:0] noise;                          // xorshift32 state for undefined bits
    reg warned;

    integer i;
    initial begin
        for (i = 0; i < 1024; i = i + 1)
            mem[i] = INIT[i * 20 +: 18];
        latch_a = 36'h0;
        latch_b = 36'h0;
        oreg_a = 36'h0;
        oreg_b = 36'h0;
        alone_a = 1'b0;
        alone_b = 1'b0;
        pulse_a = 1'b0;
        pulse_b = 1'b0;
        seen_a = 1'b0;
        seen_b = 1'b0;
        noise = 32'h9e3779b9;
        warned = 1'b0;
    end

    function automatic [31:0] next_noise(input [31:0] x);
        reg [31:0] y;
        begin
            y = x ^ (x << 13);
            y = y ^ (y >> 17);
            next_noise = y ^ (y << 5);
        end
    endfunction

    // An asynchronous reset clears the outputs at once; the port's next clock edge sees it.
    always @(posedge arst_a) pulse_a <= ~pulse_a;
    always @(posedge arst_b) pulse_b <= ~pulse_b;
    wire cleared_a = arst_a || pulse_a != seen_a;
    wire cleared_b = arst_b || pulse_b != seen_b;

    // Both ports in one process, woken by the rising edges of their clocks, so that it sees
    // when they act on the same edge: a port acts when its clock is high. That is exact for
    // ports on one clock, on a clock and its inverse, or with one clock held low; two
    // independent clocks (each seen rising alone, then both high) stop the simulation.
    /* verilator lint_off BLKSEQ */
    always @(posedge clka or posedge clkb) begin : ports
        reg write_a, write_b, read_a, read_b;
        reg [17:0] word0, word1, clash;
        if (clka && !clkb)
            alone_a = 1'b1;
        if (clkb && !clka)
            alone_b = 1'b1;
        if (clka && clkb && (alone_a || alone_b))
            $fatal(1, "DP16KD %m: ports on two independent clocks are not modelled");
        write_a = clka && !srst_a && sel_a && WEA;
        write_b = clkb && !srst_b && sel_b && WEB;
        read_a = clka && !srst_a && !arst_a && sel_a && !PDP
                 && !(WRITEMODE_A == "NORMAL" && write_a);
        read_b = clkb && !srst_b && !arst_b && sel_b
                 && !(WRITEMODE_B == "NORMAL" && write_b);
        if (write_b && PDP)
            $fatal(1, "DP16KD %m: port B of the 36-bit pseudo-dual-port block cannot write");
        if (clka) begin
            if (srst_a || cleared_a) begin
                latch_a <= 36'h0;
                oreg_a <= 36'h0;
            end else if (OCEA)
                oreg_a <= latch_a;          // the output register takes the previous read
            seen_a <= pulse_a;
        end
        if (clkb) begin
            if (srst_b || cleared_b) begin
                latch_b <= 36'h0;
                oreg_b <= 36'h0;
            end else if (OCEB)
                oreg_b <= latch_b;
            seen_b <= pulse_b;
        end
        if (read_a) begin
            word0 = mem[row_a];
            if (write_a)                        // WRITETHROUGH (READBEFOREWRITE: old word)
                if (WRITEMODE_A == "WRITETHROUGH")
                    word0 = merge(word0, mask_a0, data_a0);
            if (write_b && row_b == row_a) begin
                noise = next_noise(noise);
                word0 = merge(word0, mask_b, noise[17:0]);
            end
            latch_a <= {18'h0, (word0 >> off_a) & ones(DATA_WIDTH_A)};
        end
        if (read_b) begin
            word0 = mem[row_b];
            word1 = mem[row_b | 10'd1];
            if (write_b && WRITEMODE_B == "WRITETHROUGH")
                word0 = merge(word0, mask_b, data_b);
            if (write_a) begin
                noise = next_noise(noise);
                if (row_a == row_b)
                    word0 = merge(word0, mask_a0, noise[17:0]);
                if (PDP && row_a == row_b && WIDE_B)
                    word1 = merge(word1, mask_a1, noise[31:14]);
                if (PDP && (row_a | 10'd1) == row_b)
                    word0 = merge(word0, mask_a1, noise[31:14]);
            end
            if (WIDE_B)
                latch_b <= {word1, word0};
            else
                latch_b <= {18'h0, (word0 >> off_b) & ones(DATA_WIDTH_B)};
        end
        if (write_a) begin
            mem[row_a] = merge(mem[row_a], mask_a0, data_a0);
            if (PDP)
                mem[row_a | 10'd1] = merge(mem[row_a | 10'd1], mask_a1, dib);
        end
        if (write_b) begin
            mem[row_b] = merge(mem[row_b], mask_b, data_b);
            clash = write_a && row_a == row_b ? mask_a0 & mask_b : 18'h0;
            if (clash != 18'h0) begin
                noise = next_noise(noise);
                mem[row_b] = merge(mem[row_b], clash, noise[17:0]);
                if (!warned)
                    $display("DP16KD %m: both ports wrote bits %05h of row %0d at once",
                             clash, row_b);
                warned = 1'b1;
            end
        end
    end
    /* verilator lint_on BLKSEQ */

    wire [35:0] out_a = cleared_a ? 36'h0 : REGMODE_A == "OUTREG" ? oreg_a : latch_a;
    wire [35:0] out_b = cleared_b ? 36'h0 : REGMODE_B == "OUTREG" ? oreg_b : latch_b;
    assign {
        DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5,
        DOA4, DOA3, DOA2, DOA1, DOA0
    } = WIDE_B ? out_b[17:0] : PDP ? 18'h0 : out_a[17:0];
    assign {
        DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5,
        DOB4, DOB3, DOB2, DOB1, DOB0
    } = WIDE_B ? out_b[35:18] : out_b[17:0];
endmodule

module MULT18X18D (
    input  A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
    input  B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
    input  C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
    input  SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input  CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
    input  SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8, SRIA7,
        SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0,
    input  SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8, SRIB7,
        SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0,
    output SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7,
        SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0,
    output SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7,
        SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0,
    output ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5,
        ROA4, ROA3, ROA2, ROA1, ROA0,
    output ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5,
        ROB4, ROB3, ROB2, ROB1, ROB0,
    output ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5,
        ROC4, ROC3, ROC2, ROC1, ROC0,
    output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
        P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0,
    output SIGNEDP
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    // Without registers their clock enables, resets, dividers, GSR and RESETMODE do nothing;
    // their values are still checked.
    function automatic is_ce(input [63:0] name);
        is_ce = name == "CE0" || name == "CE1" || name == "CE2" || name == "CE3";
    endfunction
    function automatic is_rst(input [63:0] name);
        is_rst = name == "RST0" || name == "RST1" || name == "RST2" || name == "RST3";
    endfunction
    function automatic is_div(input [63:0] name);
        is_div = name == "ENABLED" || name == "DISABLED";
    endfunction

    initial begin
        `SQZ_ECP5_MULT(REG_INPUTA_CLK == "NONE", REG_INPUTA_CLK)
        `SQZ_ECP5_MULT(REG_INPUTB_CLK == "NONE", REG_INPUTB_CLK)
        `SQZ_ECP5_MULT(REG_INPUTC_CLK == "NONE", REG_INPUTC_CLK)
        `SQZ_ECP5_MULT(REG_PIPELINE_CLK == "NONE", REG_PIPELINE_CLK)
        `SQZ_ECP5_MULT(REG_OUTPUT_CLK == "NONE", REG_OUTPUT_CLK)
        `SQZ_ECP5_MULT(is_ce(REG_INPUTA_CE), REG_INPUTA_CE)
        `SQZ_ECP5_MULT(is_ce(REG_INPUTB_CE), REG_INPUTB_CE)
        `SQZ_ECP5_MULT(is_ce(REG_INPUTC_CE), REG_INPUTC_CE)
        `SQZ_ECP5_MULT(is_ce(REG_PIPELINE_CE), REG_PIPELINE_CE)
        `SQZ_ECP5_MULT(is_ce(REG_OUTPUT_CE), REG_OUTPUT_CE)
        `SQZ_ECP5_MULT(is_rst(REG_INPUTA_RST), REG_INPUTA_RST)
        `SQZ_ECP5_MULT(is_rst(REG_INPUTB_RST), REG_INPUTB_RST)
        `SQZ_ECP5_MULT(is_rst(REG_INPUTC_RST), REG_INPUTC_RST)
        `SQZ_ECP5_MULT(is_rst(REG_PIPELINE_RST), REG_PIPELINE_RST)
        `SQZ_ECP5_MULT(is_rst(REG_OUTPUT_RST), REG_OUTPUT_RST)
        `SQZ_ECP5_MULT(is_div(CLK0_DIV), CLK0_DIV)
        `SQZ_ECP5_MULT(is_div(CLK1_DIV), CLK1_DIV)
        `SQZ_ECP5_MULT(is_div(CLK2_DIV), CLK2_DIV)
        `SQZ_ECP5_MULT(is_div(CLK3_DIV), CLK3_DIV)
        `SQZ_ECP5_MULT(HIGHSPEED_CLK == "NONE", HIGHSPEED_CLK)
        `SQZ_ECP5_MULT(GSR == "ENABLED" || GSR == "DISABLED", GSR)
        `SQZ_ECP5_MULT(CAS_MATCH_REG == "FALSE", CAS_MATCH_REG)
        `SQZ_ECP5_MULT(SOURCEB_MODE == "B_SHIFT", SOURCEB_MODE)
        `SQZ_ECP5_MULT(MULT_BYPASS == "DISABLED", MULT_BYPASS)
        `SQZ_ECP5_MULT(RESETMODE == "SYNC" || RESETMODE == "ASYNC", RESETMODE)
    end

    wire [17:0] a = {
        A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0
    };
    wire [17:0] b = {
        B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0
    };
    wire [17:0] c = {
        C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0
    };
    wire signed [18:0] a_value = {SIGNEDA && a[17], a};
    wire signed [18:0] b_value = {SIGNEDB && b[17], b};
    wire signed [37:0] product = a_value * b_value;

    always @(SOURCEA or SOURCEB)
        if (SOURCEA || SOURCEB)
            $fatal(1, "MULT18X18D %m: SOURCEA/SOURCEB high (the cascade) is not modelled");

    assign {
        P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
        P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0
    } = product[35:0];
    assign SIGNEDP = SIGNEDA || SIGNEDB;
    // Without registers the registered and shift outputs pass the inputs on (they feed
    // cascades, which are not modelled).
    assign {
        ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5,
        ROA4, ROA3, ROA2, ROA1, ROA0
    } = a;
    assign {
        ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5,
        ROB4, ROB3, ROB2, ROB1, ROB0
    } = b;
    assign {
        ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5,
        ROC4, ROC3, ROC2, ROC1, ROC0
    } = c;
    assign {
        SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7,
        SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0
    } = a;
    assign {
        SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7,
        SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0
    } = b;
endmodule

`undef SQZ_ECP5_PIN
`undef SQZ_ECP5_MULT
`undef SQZ_ECP5_FAIL
/* verilator lint_on WIDTHEXPAND */
/* verilator lint_on UNUSEDPARAM */
/* verilator lint_on UNUSEDSIGNAL */
